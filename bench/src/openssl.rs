//! One core's signing speed from `openssl speed`: the yardstick of the DKIM scenarios. A single
//! `openssl speed` process uses one core, and its rates are per CPU-second of that process (OpenSSL's
//! default divisor is user CPU time), so they do not depend on what else the machine is doing.

use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// A public-key algorithm `openssl speed` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Crypto {
    /// RSA 2048 bits (`openssl speed rsa2048`).
    Rsa2048,
    /// Ed25519 (`openssl speed ed25519`).
    Ed25519,
}

impl Crypto {
    /// The algorithm argument of `openssl speed`.
    pub fn arg(self) -> &'static str {
        match self {
            Crypto::Rsa2048 => "rsa2048",
            Crypto::Ed25519 => "ed25519",
        }
    }

    /// How the result line of this algorithm starts (after leading blanks).
    fn line_prefix(self) -> &'static str {
        match self {
            Crypto::Rsa2048 => "rsa 2048 bits",
            Crypto::Ed25519 => "253 bits EdDSA (Ed25519)",
        }
    }
}

/// Signatures and verifications per second of one core.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    /// Signatures per CPU-second.
    pub sign: f64,
    /// Verifications per CPU-second.
    pub verify: f64,
}

/// The error when the `openssl` command is not installed.
fn missing() -> anyhow::Error {
    anyhow::anyhow!(
        "openssl is missing: the DKIM scenarios compare against `openssl speed` (Debian package `openssl`)"
    )
}

/// Fails clearly when `openssl` cannot be run (checked before the first scenario).
pub fn check_tool() -> anyhow::Result<()> {
    match Command::new("openssl").arg("version").output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => bail!("`openssl version` failed ({})", output.status),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(missing()),
        Err(error) => Err(error).context("starting openssl"),
    }
}

/// Runs `openssl speed -seconds SECONDS ALGORITHM` (one process, so one core) and parses its result.
/// Fails clearly when openssl is not installed or prints no result line.
pub fn speed(crypto: Crypto, seconds: u32) -> anyhow::Result<Rates> {
    let output = Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), crypto.arg()])
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(error) => return Err(error).context("starting openssl speed"),
    };
    if !output.status.success() {
        bail!(
            "openssl speed {} failed ({}): {}",
            crypto.arg(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse(&stdout, crypto).with_context(|| {
        format!(
            "no `{}` result with sign/s and verify/s in the output of openssl speed:\n{stdout}",
            crypto.line_prefix()
        )
    })
}

/// The sign/s and verify/s of `crypto`'s result line. The columns are found by name in the header
/// line above it (`sign verify sign/s verify/s`; newer OpenSSL versions add encryption columns).
fn parse(stdout: &str, crypto: Crypto) -> Option<Rates> {
    let mut header: Option<Vec<&str>> = None;
    for line in stdout.lines() {
        let trimmed = line.trim_start();
        if let Some(values) = trimmed.strip_prefix(crypto.line_prefix()) {
            let columns = header.as_ref()?;
            let values: Vec<&str> = values.split_whitespace().collect();
            let column = |name: &str| -> Option<f64> {
                let index = columns.iter().position(|column| *column == name)?;
                values.get(index)?.parse().ok()
            };
            return Some(Rates {
                sign: column("sign/s")?,
                verify: column("verify/s")?,
            });
        }
        if trimmed.contains("sign/s") {
            header = Some(trimmed.split_whitespace().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The output of OpenSSL 3.0.19 on the bench machine.
    const OPENSSL_3_0: &str = "version: 3.0.19\nbuilt on: Fri Apr  3 12:29:32 2026 UTC\n\
        options: bn(64,64)\n                  sign    verify    sign/s verify/s\n\
        rsa 2048 bits 0.000279s 0.000015s   3577.9  66774.2\n";

    #[test]
    fn parses_rsa_of_openssl_3_0() {
        let rates = parse(OPENSSL_3_0, Crypto::Rsa2048).expect("rates");
        assert_eq!(
            rates,
            Rates {
                sign: 3577.9,
                verify: 66774.2
            }
        );
        assert_eq!(parse(OPENSSL_3_0, Crypto::Ed25519), None);
    }

    #[test]
    fn parses_ed25519_and_the_wider_table_of_newer_versions() {
        let ed = "                              sign    verify    sign/s verify/s\n \
                  253 bits EdDSA (Ed25519)   0.0000s   0.0001s  32282.8  11958.1\n";
        let rates = parse(ed, Crypto::Ed25519).expect("rates");
        assert_eq!(
            rates,
            Rates {
                sign: 32282.8,
                verify: 11958.1
            }
        );
        let wide = "                  sign    verify    encrypt   decrypt   sign/s verify/s  encr./s decr./s\n\
                    rsa 2048 bits 0.000500s 0.000020s 0.000021s 0.000510s   2000.0  50000.0  47619.0   1960.8\n";
        let rates = parse(wide, Crypto::Rsa2048).expect("rates");
        assert_eq!(
            rates,
            Rates {
                sign: 2000.0,
                verify: 50000.0
            }
        );
    }

    #[test]
    fn a_result_line_without_a_header_is_no_result() {
        assert_eq!(parse("rsa 2048 bits 0.1s 0.1s 10 10\n", Crypto::Rsa2048), None);
    }
}
