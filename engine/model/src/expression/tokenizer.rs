//! The tokenizer: one pass over the expression's bytes, no backtracking.

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// A bare name or keyword: `[A-Za-z_][A-Za-z0-9_]*`.
    Identifier,
    /// `#name`.
    NamePlaceholder,
    /// `:value`.
    ValuePlaceholder,
    /// Decimal digits, used for list indexes.
    Integer,
    LeftParenthesis,
    RightParenthesis,
    LeftBracket,
    RightBracket,
    Dot,
    Comma,
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Plus,
    Minus,
    /// The end of the input; always the last token.
    End,
}

/// A token: its kind and its byte range in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

/// The byte range of a character the tokenizer cannot start a token with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct InvalidCharacter {
    pub start: usize,
    pub end: usize,
    /// Where the token before it starts, so that the error can quote it as context.
    pub previous_token_start: Option<usize>,
    /// Where the quoted context ends: after the character, or after the one the lexer read
    /// past it (a '!' is read as the start of "!=", so DynamoDB quotes "!!" for "!!!":
    /// nubo-db/dynamodb-conformance, transactGetItems error messages, captured on the service).
    pub context_end: usize,
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Splits `source` into tokens ending with [`TokenKind::End`].
pub(crate) fn tokenize(source: &str) -> Result<Vec<Token>, InvalidCharacter> {
    let bytes = source.as_bytes();
    let mut tokens = Vec::with_capacity(bytes.len() / 2 + 1);
    let mut position = 0;
    while position < bytes.len() {
        let byte = bytes[position];
        if byte.is_ascii_whitespace() {
            position += 1;
            continue;
        }
        let start = position;
        let next = bytes.get(position + 1).copied();
        let (kind, length) = match byte {
            b'(' => (TokenKind::LeftParenthesis, 1),
            b')' => (TokenKind::RightParenthesis, 1),
            b'[' => (TokenKind::LeftBracket, 1),
            b']' => (TokenKind::RightBracket, 1),
            b'.' => (TokenKind::Dot, 1),
            b',' => (TokenKind::Comma, 1),
            b'=' => (TokenKind::Equal, 1),
            b'+' => (TokenKind::Plus, 1),
            b'-' => (TokenKind::Minus, 1),
            b'<' => match next {
                Some(b'>') => (TokenKind::NotEqual, 2),
                Some(b'=') => (TokenKind::LessOrEqual, 2),
                _ => (TokenKind::Less, 1),
            },
            b'>' => match next {
                Some(b'=') => (TokenKind::GreaterOrEqual, 2),
                _ => (TokenKind::Greater, 1),
            },
            b'#' | b':' => {
                let name_length = bytes[position + 1..]
                    .iter()
                    .take_while(|&&byte| is_name_byte(byte))
                    .count();
                if name_length == 0 {
                    return Err(InvalidCharacter {
                        start,
                        end: start + 1,
                        previous_token_start: tokens.last().map(|token: &Token| token.start),
                        context_end: start + 1,
                    });
                }
                let kind = if byte == b'#' {
                    TokenKind::NamePlaceholder
                } else {
                    TokenKind::ValuePlaceholder
                };
                (kind, 1 + name_length)
            }
            b'0'..=b'9' => (
                TokenKind::Integer,
                bytes[position..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count(),
            ),
            _ if byte.is_ascii_alphabetic() || byte == b'_' => (
                TokenKind::Identifier,
                bytes[position..]
                    .iter()
                    .take_while(|&&byte| is_name_byte(byte))
                    .count(),
            ),
            _ => {
                // Report the whole character, which may be several bytes of UTF-8.
                let character_length = source[start..]
                    .chars()
                    .next()
                    .map(char::len_utf8)
                    .unwrap_or(1);
                let end = start + character_length;
                let context_end = match (byte, source[end..].chars().next()) {
                    (b'!', Some(following)) if following != '=' => end + following.len_utf8(),
                    _ => end,
                };
                return Err(InvalidCharacter {
                    start,
                    end,
                    previous_token_start: tokens.last().map(|token: &Token| token.start),
                    context_end,
                });
            }
        };
        position += length;
        tokens.push(Token {
            kind,
            start,
            end: position,
        });
    }
    tokens.push(Token {
        kind: TokenKind::End,
        start: bytes.len(),
        end: bytes.len(),
    });
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<TokenKind> {
        tokenize(source)
            .unwrap()
            .iter()
            .map(|token| token.kind)
            .collect()
    }

    #[test]
    fn splits_every_token_kind() {
        use TokenKind::*;
        assert_eq!(
            kinds("a.#b[12] <> :v,(<=>=< >)+-="),
            vec![
                Identifier,
                Dot,
                NamePlaceholder,
                LeftBracket,
                Integer,
                RightBracket,
                NotEqual,
                ValuePlaceholder,
                Comma,
                LeftParenthesis,
                LessOrEqual,
                GreaterOrEqual,
                Less,
                Greater,
                RightParenthesis,
                Plus,
                Minus,
                Equal,
                End
            ]
        );
    }

    #[test]
    fn rejects_stray_characters() {
        let invalid = |start, end, previous_token_start| InvalidCharacter {
            start,
            end,
            previous_token_start,
            context_end: end,
        };
        assert_eq!(tokenize("a = $"), Err(invalid(4, 5, Some(2))));
        assert_eq!(tokenize("# = 1"), Err(invalid(0, 1, None)));
        assert_eq!(tokenize("é"), Err(invalid(0, 2, None)));
        // A '!' is quoted with the character after it.
        assert_eq!(
            tokenize("!!!"),
            Err(InvalidCharacter {
                context_end: 2,
                ..invalid(0, 1, None)
            })
        );
        assert_eq!(tokenize("a !"), Err(invalid(2, 3, Some(0))));
    }
}
