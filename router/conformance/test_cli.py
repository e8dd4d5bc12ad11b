"""The `shoal` command line as a first-time user meets it: output into a pipe that closes
early, help texts, logs into a file, and the native CLI pointed at the HTTP port."""

import subprocess

import pytest

from conftest import _shoal_binary, dev_cluster_logged

ANSI_ESCAPE = b"\x1b["


def shoal(*arguments, **options):
    return subprocess.run([str(_shoal_binary()), *arguments], capture_output=True, timeout=60,
                          **options)


@pytest.fixture
def native_endpoint(port):
    # `shoal dev --port P` serves the native protocol on P + 1.
    return f"127.0.0.1:{port + 1}"


def test_scan_into_a_pipe_closed_early_stops_quietly(ddb, table, native_endpoint):
    # More output than a pipe holds, so the writer meets the closed pipe.
    value = "x" * 4000
    for i in range(40):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "v": {"S": value}})
    process = subprocess.Popen(
        [str(_shoal_binary()), "scan", "--table", table, "--endpoint", native_endpoint],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 0, stderr
    assert first.startswith(b'{"')
    assert b"panicked" not in stderr and stderr == b""


def test_the_http_port_is_named_as_such(table, port):
    result = shoal("scan", "--table", table, "--endpoint", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert b"answered in HTTP" in result.stderr, result.stderr
    assert b"over the limit" not in result.stderr


@pytest.mark.parametrize("command", [["query"], ["scan"], ["item", "get"]])
def test_reads_offer_no_write_condition(command):
    help_text = shoal(*command, "--help").stdout
    assert b"--condition" not in help_text
    assert b"--table" in help_text


def test_dev_help_says_where_the_ports_are():
    help_text = shoal("dev", "--help").stdout
    assert b"see `shoal dev --help`" not in help_text
    assert b"P + 1" in help_text


def test_logs_into_a_file_carry_no_colour_codes():
    # Every process of `shoal dev` logs into the file its stderr is; colour is for terminals.
    with dev_cluster_logged() as (_url, log_path):
        log = log_path.read_bytes()
    assert b"INFO" in log, log[-2000:]
    assert ANSI_ESCAPE not in log
