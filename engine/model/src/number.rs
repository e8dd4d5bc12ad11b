//! DynamoDB's Number: an exact decimal, never floating point.
//!
//! A number is `(-1)^negative × coefficient × 10^exponent`. Invariants, checked by every
//! constructor:
//! 1. Zero is the single value `{ negative: false, coefficient: 0, exponent: 0 }`.
//! 2. A non-zero coefficient has no trailing decimal zeros, so each value has one representation
//!    and `1`, `1.0` and `10E-1` are equal field by field (and so hash and encode equally).
//! 3. The coefficient has at most [`NUMBER_DIGITS_MAX`] decimal digits.
//! 4. The adjusted exponent (the exponent of the leading digit, as in `d.ddd × 10^adjusted`) lies
//!    in `NUMBER_ADJUSTED_EXPONENT_MIN..=NUMBER_ADJUSTED_EXPONENT_MAX`, which is DynamoDB's range
//!    of magnitudes 1E-130 to 9.9999999999999999999999999999999999999E+125.

use std::cmp::Ordering;
use std::fmt;

use crate::error::{Error, Result, validation};
use crate::messages;

/// DynamoDB keeps up to 38 significant decimal digits.
pub const NUMBER_DIGITS_MAX: u32 = 38;
/// The largest adjusted exponent: the largest magnitude is 9.99...E+125.
pub const NUMBER_ADJUSTED_EXPONENT_MAX: i32 = 125;
/// The smallest adjusted exponent: the smallest non-zero magnitude is 1E-130.
pub const NUMBER_ADJUSTED_EXPONENT_MIN: i32 = -130;

/// 10^38, the first value with 39 digits. The coefficient must stay below it.
const COEFFICIENT_LIMIT: u128 = 10u128.pow(NUMBER_DIGITS_MAX);

// A 38-digit coefficient must fit in a u128, which holds up to about 3.4E38.
const _: () = assert!(COEFFICIENT_LIMIT - 1 <= u128::MAX / 2);
// The sort-key encoding stores the adjusted exponent in one byte.
const _: () = assert!(NUMBER_ADJUSTED_EXPONENT_MAX - NUMBER_ADJUSTED_EXPONENT_MIN <= 255);

/// An exact decimal with DynamoDB's precision and range. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Number {
    negative: bool,
    coefficient: u128,
    exponent: i32,
}

/// The exponent literal is saturated here while parsing; any value this large is out of range
/// anyway, and saturating keeps the arithmetic free of overflow.
const EXPONENT_LITERAL_SATURATION: i64 = 1_000_000_000;

impl Number {
    /// The number zero.
    pub const ZERO: Number = Number {
        negative: false,
        coefficient: 0,
        exponent: 0,
    };

    /// Parses DynamoDB's number syntax: an optional sign, digits with an optional decimal point,
    /// and an optional exponent (`e` or `E`, optional sign, digits).
    pub fn parse(text: &str) -> Result<Number> {
        let bytes = text.as_bytes();
        let mut position = 0;
        let mut negative = false;
        if let Some(&sign) = bytes.first()
            && (sign == b'-' || sign == b'+')
        {
            negative = sign == b'-';
            position = 1;
        }
        let mut digits: Vec<u8> = Vec::with_capacity(bytes.len().min(64));
        let mut mantissa_digit_count = 0usize;
        let mut fraction_digit_count: i64 = 0;
        let mut seen_point = false;
        while position < bytes.len() {
            let byte = bytes[position];
            if byte.is_ascii_digit() {
                mantissa_digit_count += 1;
                if seen_point {
                    fraction_digit_count += 1;
                }
                // Leading zeros carry no information, so they are never stored.
                if !(digits.is_empty() && byte == b'0') {
                    digits.push(byte - b'0');
                }
            } else if byte == b'.' && !seen_point {
                seen_point = true;
            } else {
                break;
            }
            position += 1;
        }
        if mantissa_digit_count == 0 {
            return Err(validation(messages::number_not_convertible(text)));
        }
        let mut exponent_literal: i64 = 0;
        if position < bytes.len() {
            if bytes[position] != b'e' && bytes[position] != b'E' {
                return Err(validation(messages::number_not_convertible(text)));
            }
            position += 1;
            let mut exponent_negative = false;
            if let Some(&sign) = bytes.get(position)
                && (sign == b'-' || sign == b'+')
            {
                exponent_negative = sign == b'-';
                position += 1;
            }
            let exponent_start = position;
            while let Some(&byte) = bytes.get(position) {
                if !byte.is_ascii_digit() {
                    return Err(validation(messages::number_not_convertible(text)));
                }
                exponent_literal = (exponent_literal * 10 + i64::from(byte - b'0'))
                    .min(EXPONENT_LITERAL_SATURATION);
                position += 1;
            }
            if position == exponent_start {
                return Err(validation(messages::number_not_convertible(text)));
            }
            if exponent_negative {
                exponent_literal = -exponent_literal;
            }
        }
        // Fraction digits beyond the saturation bound cannot produce an in-range non-zero value.
        let fraction = fraction_digit_count.min(EXPONENT_LITERAL_SATURATION);
        Number::from_digits(negative, &digits, exponent_literal - fraction)
    }

    /// Builds a number from decimal digits (values 0..=9, most significant first) and an
    /// exponent, normalising and checking precision and range.
    fn from_digits(negative: bool, digits: &[u8], exponent: i64) -> Result<Number> {
        let first_nonzero = digits.iter().position(|&digit| digit != 0);
        let Some(first_nonzero) = first_nonzero else {
            return Ok(Number::ZERO);
        };
        let mut last_nonzero = digits.len() - 1;
        while digits[last_nonzero] == 0 {
            last_nonzero -= 1;
        }
        let significant = &digits[first_nonzero..=last_nonzero];
        let trailing_zero_count = (digits.len() - 1 - last_nonzero) as i64;
        let exponent = exponent + trailing_zero_count;
        let adjusted_exponent = exponent + significant.len() as i64 - 1;
        if adjusted_exponent > i64::from(NUMBER_ADJUSTED_EXPONENT_MAX) {
            return Err(validation(messages::NUMBER_OVERFLOW));
        }
        if adjusted_exponent < i64::from(NUMBER_ADJUSTED_EXPONENT_MIN) {
            return Err(validation(messages::NUMBER_UNDERFLOW));
        }
        if significant.len() > NUMBER_DIGITS_MAX as usize {
            return Err(validation(messages::NUMBER_TOO_MANY_DIGITS));
        }
        let coefficient = significant
            .iter()
            .fold(0u128, |value, &digit| value * 10 + u128::from(digit));
        // The range check above bounds the exponent well inside i32.
        let exponent =
            i32::try_from(exponent).map_err(|_| validation(messages::NUMBER_OVERFLOW))?;
        Ok(Number {
            negative,
            coefficient,
            exponent,
        })
    }

    /// Rebuilds a number from its stored parts, rejecting any non-canonical form (invariants 1 to
    /// 4), so that a decoded number compares, hashes and encodes like a parsed one.
    pub fn from_parts(negative: bool, coefficient: u128, exponent: i32) -> Option<Number> {
        if coefficient == 0 {
            return (!negative && exponent == 0).then_some(Number::ZERO);
        }
        if coefficient.is_multiple_of(10) || coefficient >= COEFFICIENT_LIMIT {
            return None;
        }
        let number = Number {
            negative,
            coefficient,
            exponent,
        };
        let adjusted = i64::from(exponent) + i64::from(number.digit_count()) - 1;
        let in_range = adjusted >= i64::from(NUMBER_ADJUSTED_EXPONENT_MIN)
            && adjusted <= i64::from(NUMBER_ADJUSTED_EXPONENT_MAX);
        in_range.then_some(number)
    }

    /// Whether the number is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// Whether the number is zero.
    pub fn is_zero(&self) -> bool {
        self.coefficient == 0
    }

    /// The coefficient: the significant digits as an integer, without trailing zeros.
    pub fn coefficient(&self) -> u128 {
        self.coefficient
    }

    /// The power of ten the coefficient is multiplied by.
    pub fn exponent(&self) -> i32 {
        self.exponent
    }

    /// The count of significant digits (zero has one).
    pub fn digit_count(&self) -> u32 {
        if self.coefficient == 0 {
            1
        } else {
            self.coefficient.ilog10() + 1
        }
    }

    /// The exponent of the leading digit in scientific notation.
    pub fn adjusted_exponent(&self) -> i32 {
        self.exponent + self.digit_count() as i32 - 1
    }

    /// The coefficient scaled to exactly 38 digits; with the adjusted exponent it orders numbers
    /// of the same sign by magnitude.
    fn scaled_coefficient(&self) -> u128 {
        debug_assert!(self.digit_count() <= NUMBER_DIGITS_MAX, "invariant 3");
        self.coefficient * 10u128.pow(NUMBER_DIGITS_MAX - self.digit_count())
    }

    /// The number with its sign flipped.
    pub fn negated(&self) -> Number {
        if self.is_zero() {
            *self
        } else {
            Number {
                negative: !self.negative,
                ..*self
            }
        }
    }

    /// Exact addition; an inexact, too large or too small result is DynamoDB's error.
    pub fn add(&self, other: &Number) -> Result<Number> {
        if self.is_zero() {
            return Ok(*other);
        }
        if other.is_zero() {
            return Ok(*self);
        }
        let exponent_min = self.exponent.min(other.exponent);
        let left = self.aligned_digits(exponent_min);
        let right = other.aligned_digits(exponent_min);
        let (digits, negative) = if self.negative == other.negative {
            (add_digit_vectors(&left, &right), self.negative)
        } else {
            match compare_digit_vectors(&left, &right) {
                Ordering::Equal => return Ok(Number::ZERO),
                Ordering::Greater => (subtract_digit_vectors(&left, &right), self.negative),
                Ordering::Less => (subtract_digit_vectors(&right, &left), other.negative),
            }
        };
        Number::from_digits(negative, &digits, i64::from(exponent_min)).map_err(|error| {
            // DynamoDB reports an inexact sum as a precision error rather than rounding.
            if error.message() == messages::NUMBER_TOO_MANY_DIGITS {
                Error::Validation(messages::NUMBER_ARITHMETIC_PRECISION.to_string())
            } else {
                error
            }
        })
    }

    /// Exact subtraction, with the same errors as [`Number::add`].
    pub fn subtract(&self, other: &Number) -> Result<Number> {
        self.add(&other.negated())
    }

    /// The coefficient's digits followed by zeros so that the last digit has `exponent`.
    fn aligned_digits(&self, exponent: i32) -> Vec<u8> {
        let mut digits: Vec<u8> = self
            .coefficient
            .to_string()
            .bytes()
            .map(|byte| byte - b'0')
            .collect();
        let padding = (self.exponent - exponent).max(0) as usize;
        digits.resize(digits.len() + padding, 0);
        digits
    }

    /// The size DynamoDB charges for this number: one byte per two significant digits, plus one.
    pub fn size_bytes(&self) -> usize {
        (self.digit_count() as usize).div_ceil(2) + 1
    }

    /// An order-preserving encoding: for numbers `a` and `b`, `a < b` exactly when
    /// `a.sort_key_bytes() < b.sort_key_bytes()` byte-wise. Layout in FORMAT.md.
    pub fn sort_key_bytes(&self) -> [u8; NUMBER_SORT_KEY_BYTES] {
        let mut bytes = [0u8; NUMBER_SORT_KEY_BYTES];
        if self.is_zero() {
            bytes[0] = NUMBER_SORT_KEY_ZERO;
            return bytes;
        }
        debug_assert!(
            (NUMBER_ADJUSTED_EXPONENT_MIN..=NUMBER_ADJUSTED_EXPONENT_MAX)
                .contains(&self.adjusted_exponent()),
            "invariant 4"
        );
        let exponent_byte = (self.adjusted_exponent() - NUMBER_ADJUSTED_EXPONENT_MIN) as u8;
        let scaled = self.scaled_coefficient();
        if self.negative {
            // A larger magnitude is a smaller negative number, so both fields are inverted.
            bytes[0] = NUMBER_SORT_KEY_NEGATIVE;
            bytes[1] = u8::MAX - exponent_byte;
            bytes[2..].copy_from_slice(&(u128::MAX - scaled).to_be_bytes());
        } else {
            bytes[0] = NUMBER_SORT_KEY_POSITIVE;
            bytes[1] = exponent_byte;
            bytes[2..].copy_from_slice(&scaled.to_be_bytes());
        }
        bytes
    }
}

/// The fixed length of a number's sort-key encoding: a sign byte, an exponent byte and a 16-byte
/// big-endian scaled coefficient.
pub const NUMBER_SORT_KEY_BYTES: usize = 18;
/// The sign byte of a negative number's sort-key encoding.
pub const NUMBER_SORT_KEY_NEGATIVE: u8 = 0x01;
/// The sign byte of zero's sort-key encoding.
pub const NUMBER_SORT_KEY_ZERO: u8 = 0x02;
/// The sign byte of a positive number's sort-key encoding.
pub const NUMBER_SORT_KEY_POSITIVE: u8 = 0x03;

fn add_digit_vectors(left: &[u8], right: &[u8]) -> Vec<u8> {
    let length = left.len().max(right.len()) + 1;
    let mut result = vec![0u8; length];
    let mut carry = 0u8;
    for index in 0..length {
        let left_digit = if index < left.len() {
            left[left.len() - 1 - index]
        } else {
            0
        };
        let right_digit = if index < right.len() {
            right[right.len() - 1 - index]
        } else {
            0
        };
        let sum = left_digit + right_digit + carry;
        result[length - 1 - index] = sum % 10;
        carry = sum / 10;
    }
    result
}

/// Subtracts `right` from `left`; the caller guarantees `left >= right`.
fn subtract_digit_vectors(left: &[u8], right: &[u8]) -> Vec<u8> {
    let mut result = left.to_vec();
    let mut borrow = 0i8;
    for index in 0..left.len() {
        let right_digit = if index < right.len() {
            right[right.len() - 1 - index] as i8
        } else {
            0
        };
        let position = left.len() - 1 - index;
        let mut digit = left[position] as i8 - right_digit - borrow;
        borrow = 0;
        if digit < 0 {
            digit += 10;
            borrow = 1;
        }
        result[position] = digit as u8;
    }
    result
}

fn compare_digit_vectors(left: &[u8], right: &[u8]) -> Ordering {
    let left = &left[left
        .iter()
        .position(|&digit| digit != 0)
        .unwrap_or(left.len())..];
    let right = &right[right
        .iter()
        .position(|&digit| digit != 0)
        .unwrap_or(right.len())..];
    left.len().cmp(&right.len()).then_with(|| left.cmp(right))
}

impl Ord for Number {
    fn cmp(&self, other: &Number) -> Ordering {
        let sign_rank = |number: &Number| -> i8 {
            if number.is_zero() {
                0
            } else if number.negative {
                -1
            } else {
                1
            }
        };
        let by_sign = sign_rank(self).cmp(&sign_rank(other));
        if by_sign != Ordering::Equal || self.is_zero() {
            return by_sign;
        }
        let by_magnitude = self
            .adjusted_exponent()
            .cmp(&other.adjusted_exponent())
            .then_with(|| self.scaled_coefficient().cmp(&other.scaled_coefficient()));
        if self.negative {
            by_magnitude.reverse()
        } else {
            by_magnitude
        }
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Number) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl From<u64> for Number {
    fn from(value: u64) -> Number {
        let mut coefficient = u128::from(value);
        let mut exponent = 0;
        while coefficient != 0 && coefficient.is_multiple_of(10) {
            coefficient /= 10;
            exponent += 1;
        }
        if coefficient == 0 {
            Number::ZERO
        } else {
            Number {
                negative: false,
                coefficient,
                exponent,
            }
        }
    }
}

/// Plain notation without an exponent and without redundant zeros, as DynamoDB returns numbers.
impl fmt::Display for Number {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.coefficient.to_string();
        let mut text = String::with_capacity(digits.len() + 8);
        if self.negative {
            text.push('-');
        }
        if self.exponent >= 0 {
            text.push_str(&digits);
            if self.coefficient != 0 {
                text.extend(std::iter::repeat_n('0', self.exponent as usize));
            }
        } else {
            let fraction_length = self.exponent.unsigned_abs() as usize;
            if digits.len() > fraction_length {
                let (integer, fraction) = digits.split_at(digits.len() - fraction_length);
                text.push_str(integer);
                text.push('.');
                text.push_str(fraction);
            } else {
                text.push_str("0.");
                text.extend(std::iter::repeat_n('0', fraction_length - digits.len()));
                text.push_str(&digits);
            }
        }
        formatter.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Number {
        Number::parse(text).unwrap()
    }

    #[test]
    fn equal_values_have_one_representation() {
        assert_eq!(number("1"), number("1.0"));
        assert_eq!(number("1"), number("10E-1"));
        assert_eq!(number("1"), number("+0001.000"));
        assert_eq!(number("0"), number("-0.000e5"));
        assert_eq!(number("1200"), number("12e2"));
        assert_eq!(number("1200").coefficient(), 12);
        assert_eq!(number("1200").exponent(), 2);
        assert!(!number("-0").is_negative());
    }

    #[test]
    fn display_is_plain_and_canonical() {
        for (input, expected) in [
            ("1.50", "1.5"),
            ("1e3", "1000"),
            ("-0.0012", "-0.0012"),
            ("12.345", "12.345"),
            ("0", "0"),
            ("1E-3", "0.001"),
            ("-7", "-7"),
        ] {
            assert_eq!(number(input).to_string(), expected, "{input}");
        }
    }

    #[test]
    fn rejects_malformed_text() {
        for input in [
            "", "-", "+", ".", "e5", "1e", "1e+", "1.2.3", "abc", " 1", "1 ", "0x10", "1e5.5",
            "--1", "NaN", "Infinity",
        ] {
            let error = Number::parse(input).unwrap_err();
            assert_eq!(
                error.message(),
                format!("The parameter cannot be converted to a numeric value: {input}"),
                "{input:?}"
            );
        }
    }

    #[test]
    fn limits_match_dynamodb() {
        assert!(Number::parse("9.9999999999999999999999999999999999999E+125").is_ok());
        assert!(Number::parse("1E-130").is_ok());
        assert!(Number::parse("-1E-130").is_ok());
        assert_eq!(
            Number::parse("1E+126").unwrap_err().message(),
            messages::NUMBER_OVERFLOW
        );
        assert_eq!(
            Number::parse("-1E+126").unwrap_err().message(),
            messages::NUMBER_OVERFLOW
        );
        assert_eq!(
            Number::parse("1E-131").unwrap_err().message(),
            messages::NUMBER_UNDERFLOW
        );
        assert_eq!(
            Number::parse("1e999999999999999999999")
                .unwrap_err()
                .message(),
            messages::NUMBER_OVERFLOW
        );
        assert_eq!(
            Number::parse("1.23456789012345678901234567890123456789")
                .unwrap_err()
                .message(),
            messages::NUMBER_TOO_MANY_DIGITS
        );
        // Leading and trailing zeros are not significant.
        assert!(Number::parse("000012345678901234567890123456789012345678000000").is_ok());
    }

    #[test]
    fn ordering_is_numeric() {
        let ordered = [
            "-1e125",
            "-10",
            "-9.5",
            "-1e-130",
            "0",
            "1e-130",
            "0.5",
            "1",
            "1.0000001",
            "9",
            "10",
            "1e125",
        ];
        for pair in ordered.windows(2) {
            assert!(
                number(pair[0]) < number(pair[1]),
                "{} < {}",
                pair[0],
                pair[1]
            );
            assert!(number(pair[0]).sort_key_bytes() < number(pair[1]).sort_key_bytes());
        }
    }

    #[test]
    fn sort_key_bytes_match_format_md() {
        let mut expected = [0u8; NUMBER_SORT_KEY_BYTES];
        expected[0] = NUMBER_SORT_KEY_POSITIVE;
        expected[1] = 0x83;
        expected[2..].copy_from_slice(&(42u128 * 10u128.pow(36)).to_be_bytes());
        assert_eq!(number("42").sort_key_bytes(), expected);
        let mut negative = [0u8; NUMBER_SORT_KEY_BYTES];
        negative[0] = NUMBER_SORT_KEY_NEGATIVE;
        negative[1] = 255 - 0x83;
        negative[2..].copy_from_slice(&(u128::MAX - 42u128 * 10u128.pow(36)).to_be_bytes());
        assert_eq!(number("-42").sort_key_bytes(), negative);
        let mut zero = [0u8; NUMBER_SORT_KEY_BYTES];
        zero[0] = NUMBER_SORT_KEY_ZERO;
        assert_eq!(Number::ZERO.sort_key_bytes(), zero);
    }

    #[test]
    fn arithmetic_is_exact_and_checked() {
        assert_eq!(number("0.1").add(&number("0.2")).unwrap(), number("0.3"));
        assert_eq!(number("5").subtract(&number("7")).unwrap(), number("-2"));
        assert_eq!(number("-5").add(&number("5")).unwrap(), Number::ZERO);
        assert_eq!(
            number("1e10").add(&number("1")).unwrap(),
            number("10000000001")
        );
        let big = number("9.9999999999999999999999999999999999999E+125");
        assert_eq!(
            big.add(&big).unwrap_err().message(),
            messages::NUMBER_OVERFLOW
        );
        assert_eq!(
            number("1e30").add(&number("1e-30")).unwrap_err().message(),
            messages::NUMBER_ARITHMETIC_PRECISION
        );
        assert_eq!(
            number("1.1e-130")
                .subtract(&number("1e-130"))
                .unwrap_err()
                .message(),
            messages::NUMBER_UNDERFLOW
        );
    }

    #[test]
    fn from_parts_rejects_non_canonical_forms() {
        assert_eq!(Number::from_parts(false, 0, 0), Some(Number::ZERO));
        assert_eq!(Number::from_parts(true, 0, 0), None);
        assert_eq!(Number::from_parts(false, 0, 3), None);
        assert_eq!(Number::from_parts(false, 10, 0), None);
        assert_eq!(Number::from_parts(false, 1, 126), None);
        assert_eq!(Number::from_parts(false, 15, -1), Some(number("1.5")));
    }
}
