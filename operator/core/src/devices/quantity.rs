//! Parsing of Kubernetes resource quantities (`16Gi`, `65536Ki`, `8`, `500m`) into
//! integers. Hand-written because the available crate pins an older k8s-openapi.

/// The value of `q` in units of `unit` bytes (or items), rounded down; `None` when
/// malformed or out of range.
pub fn parse_scaled(q: &str, unit: u128) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    // Scale by 10^frac_len to keep the arithmetic integral.
    let digits: u128 = format!("{int_part}{frac_part}").parse().ok()?;
    let frac_scale = 10u128.checked_pow(u32::try_from(frac_part.len()).ok()?)?;
    let (mul, div): (u128, u128) = match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        _ => return None,
    };
    let value = digits.checked_mul(mul)? / (div * frac_scale * unit);
    u64::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::parse_scaled;

    const MIB: u128 = 1 << 20;

    #[test]
    fn binary_and_decimal_suffixes_scale_to_mib() {
        assert_eq!(parse_scaled("16Gi", MIB), Some(16 * 1024));
        assert_eq!(parse_scaled("65536Ki", MIB), Some(64));
        assert_eq!(parse_scaled("1G", MIB), Some(953));
        assert_eq!(parse_scaled("1.5Gi", MIB), Some(1536));
    }

    #[test]
    fn plain_and_milli_counts() {
        assert_eq!(parse_scaled("8", 1), Some(8));
        assert_eq!(parse_scaled("7500m", 1), Some(7));
    }

    #[test]
    fn malformed_quantities_are_none() {
        for q in [
            "",
            "Gi",
            "12Xi",
            "1.2.3",
            "-4",
            "99999999999999999999999999999999999999Ti",
        ] {
            assert_eq!(parse_scaled(q, MIB), None, "{q}");
        }
    }
}
