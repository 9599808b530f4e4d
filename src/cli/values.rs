//! Parsers for flag values, each turning a bad value into the message a
//! user reads after the flag's name.

use std::time::Duration;

use crate::event::PortRange;

/// `N` or `N-M` as BCC's tcpcong takes it; a reversed range is swapped.
pub fn parse_ports(s: &str) -> Result<PortRange, String> {
    let port = |p: &str| -> Result<u16, String> {
        if p.is_empty() {
            return Err(format!("'{s}' lacks a port: use N or N-M"));
        }
        p.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| p.parse::<u16>().ok())
            .flatten()
            .ok_or_else(|| format!("'{p}' is not a port (0-65535); use N or N-M"))
    };
    let parts: Vec<&str> = s.split('-').collect();
    let (lo, hi) = match parts.as_slice() {
        [one] => (port(one)?, port(one)?),
        [a, b] => (port(a)?, port(b)?),
        _ => return Err("expected a port N or a range N-M".into()),
    };
    Ok(PortRange {
        lo: lo.min(hi),
        hi: lo.max(hi),
    })
}

pub fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err("expected a number of threads from 1 to 1024".into()),
    }
}

pub fn parse_family(s: &str) -> Result<u8, String> {
    match s {
        "4" | "ipv4" => Ok(4),
        "6" | "ipv6" => Ok(6),
        _ => Err("expected 4 or 6".into()),
    }
}

/// Seconds as BCC takes them (an integer), or a number with a unit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration such as 30, 10s, 500ms, 5m or 2h, not '{s}'");
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.trim().parse().map_err(|_| bad())?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Bytes, with an optional unit: B, KB/MB/GB (powers of 1000), K/M/G or
/// KiB/MiB/GiB (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("expected a size such as 64MB, 512KiB or 1G, not '{s}'");
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.trim().parse().map_err(|_| bad())?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || !(1.0..=1e18).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes as u64)
}

pub fn parse_outputs(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a positive number of outputs, not '{s}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_like_the_seed() {
        assert_eq!(parse_ports("80"), Ok(PortRange { lo: 80, hi: 80 }));
        assert_eq!(
            parse_ports("3000-3006"),
            Ok(PortRange { lo: 3000, hi: 3006 })
        );
        assert_eq!(parse_ports("9-1"), Ok(PortRange { lo: 1, hi: 9 }));
        for bad in ["", "abc", "70000", "1-2-3", "-5", "5-", " 5", "+5", "0x10"] {
            assert!(parse_ports(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            parse_ports("3000-"),
            Err("'3000-' lacks a port: use N or N-M".into())
        );
        assert_eq!(
            parse_ports("-5"),
            Err("'-5' lacks a port: use N or N-M".into())
        );
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["", "0", "-1", "5x", "abc", "inf", "NaN"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("64MB"), Ok(64_000_000));
        assert_eq!(parse_size("512KiB"), Ok(524_288));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("100"), Ok(100));
        for bad in ["", "0", "-1", "5x", "MB", "1e30"] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
