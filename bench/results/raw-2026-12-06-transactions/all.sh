#!/bin/bash
OLD=/work/target-old/release/shoal
NEW=/work/main/target/release/shoal
for round in 1 2; do
  /tmp/tbench/run.sh $OLD old put-only 8 16000 $round
  /tmp/tbench/run.sh $NEW new put-only 8 16000 $round
  /tmp/tbench/run.sh $OLD old put-only 1 3000 $round
  /tmp/tbench/run.sh $NEW new put-only 1 3000 $round
  /tmp/tbench/run.sh $NEW new put-with-transfers 8 16000 $round
  /tmp/tbench/run.sh $NEW new transfer2 8 8000 $round
  /tmp/tbench/run.sh $NEW new transfer10 8 3000 $round
  /tmp/tbench/run.sh $NEW new transfer2 1 2000 $round
done
echo done > /tmp/tbench/finished
