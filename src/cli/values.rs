//! Parsers for flag values, each turning a bad value into the message a
//! user reads after the flag's name.

use std::time::Duration;

use crate::event::PortRange;

/// A flow id: the `flow` column's number (a socket cookie).
pub fn parse_flow(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| {
        format!("'{s}' is not a flow id: a number, as the flow column of `tcpcong events` shows it")
    })
}

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

/// The longest duration taken (about 31 years), and the shortest.
const DURATION_MAX_S: f64 = 1e9;
const DURATION_MIN_S: f64 = 1e-3;

/// Seconds, if `s` is written as a duration (a number, with a unit or
/// not), whatever its value.
pub fn duration_secs(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.trim().parse().ok()?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(value * scale)
}

/// Seconds as BCC takes them (an integer), or a number with a unit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs = duration_secs(s).ok_or_else(|| {
        format!("expected a duration such as 30, 10s, 500ms, 5m or 2h, not '{s}'")
    })?;
    if secs > DURATION_MAX_S {
        return Err(format!(
            "'{s}': at most {DURATION_MAX_S:e} s (about 31 years)"
        ));
    }
    if secs.is_nan() || secs <= 0.0 {
        return Err(format!("'{s}': a duration is more than 0"));
    }
    if secs < DURATION_MIN_S {
        return Err(format!("'{s}': at least 1ms"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Live mode's `[interval]`, which a mistyped command lands in: a word
/// is answered with the command it resembles.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| {
        if std::path::Path::new(s).exists() {
            return format!("{e} (to read a recording: tcpcong analyze {s})");
        }
        if s.bytes().any(|b| b.is_ascii_digit()) {
            return e;
        }
        use clap::CommandFactory;
        let cli = super::args::Cli::command();
        let near = cli
            .get_subcommands()
            .map(clap::Command::get_name)
            .filter(|name| *name != "help")
            .map(|name| (strsim::damerau_levenshtein(s, name), name))
            .min();
        match near {
            Some((d, name)) if d <= 2 => format!("{e} (is it the command '{name}'?)"),
            _ => format!("{e}, nor a command: tcpcong --help lists them"),
        }
    })
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

/// `--listen`: an address and a port, as the system binds them (no name
/// is looked up: a name can mean several addresses, or another one later).
pub fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("expected an IP address and a port, such as 127.0.0.1:9464 or [::1]:9464 (host names are not looked up), not '{s}'")
    })
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
    fn a_listen_address_is_an_ip_and_a_port() {
        assert_eq!(parse_listen("127.0.0.1:9464").unwrap().port(), 9464);
        assert_eq!(parse_listen("[::1]:0").unwrap().port(), 0);
        let e = parse_listen("localhost:9464").unwrap_err();
        assert!(
            e.contains("host names are not looked up") && e.contains("'localhost:9464'"),
            "{e}"
        );
    }

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
        for bad in [
            "",
            "0",
            "-1",
            "5x",
            "abc",
            "inf",
            "NaN",
            "0.0000000001",
            "0.5ms",
            "2562047h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(parse_duration("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(
            parse_duration("2562047h"),
            Err("'2562047h': at most 1e9 s (about 31 years)".into())
        );
        assert_eq!(
            parse_duration("0.0000000001"),
            Err("'0.0000000001': at least 1ms".into())
        );
    }

    #[test]
    fn a_word_for_an_interval_is_answered_with_the_command_it_resembles() {
        let bad = "expected a duration such as 30, 10s, 500ms, 5m or 2h";
        assert_eq!(
            parse_interval("analyse"),
            Err(format!(
                "{bad}, not 'analyse' (is it the command 'analyze'?)"
            ))
        );
        assert_eq!(
            parse_interval("recrod"),
            Err(format!("{bad}, not 'recrod' (is it the command 'record'?)"))
        );
        assert_eq!(
            parse_interval("x.parquet"),
            Err(format!(
                "{bad}, not 'x.parquet', nor a command: tcpcong --help lists them"
            ))
        );
        assert_eq!(parse_interval("5x"), Err(format!("{bad}, not '5x'")));
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ipv4-loss.parquet");
        assert_eq!(
            parse_interval(file),
            Err(format!(
                "{bad}, not '{file}' (to read a recording: tcpcong analyze {file})"
            ))
        );
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
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
