//! The little PEM/DER the RSA keys need with `ring`, which reads DER only: PEM armour off, and
//! a PKCS#1 `RSAPrivateKey` written from the RSA-XML components.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The label (`PRIVATE KEY`, `RSA PRIVATE KEY` …) and DER bytes of the first PEM block.
pub(crate) fn pem_to_der(pem: &str) -> Option<(String, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end = body.find(&format!("-----END {label}-----"))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).ok().map(|der| (label, der))
}

/// DER length octets.
fn length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// A DER INTEGER of an unsigned big-endian magnitude (leading zeros dropped, a zero byte
/// added when the top bit is set).
fn integer(magnitude: &[u8], out: &mut Vec<u8>) {
    let start = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len());
    let digits = &magnitude[start..];
    let pad = digits.first().is_none_or(|b| b & 0x80 != 0);
    out.push(0x02);
    length(digits.len() + usize::from(pad), out);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
}

/// PKCS#1 `RSAPrivateKey` (version 0) from `n, e, d, p, q, dp, dq, qinv`.
pub(crate) fn pkcs1_private_key(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    integer(&[0], &mut body);
    for part in parts {
        integer(part, &mut body);
    }
    let mut out = vec![0x30];
    length(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_lengths_are_minimal_der() {
        let mut out = Vec::new();
        integer(&[0, 0, 0x7f], &mut out);
        assert_eq!(out, [0x02, 0x01, 0x7f]);
        out.clear();
        integer(&[0x80], &mut out);
        assert_eq!(out, [0x02, 0x02, 0x00, 0x80]);
        out.clear();
        integer(&[], &mut out);
        assert_eq!(out, [0x02, 0x01, 0x00]);
        out.clear();
        length(300, &mut out);
        assert_eq!(out, [0x82, 0x01, 0x2c]);
        out.clear();
        length(200, &mut out);
        assert_eq!(out, [0x81, 0xc8]);
    }

    #[test]
    fn pem_armour_comes_off() {
        let (label, der) = pem_to_der(
            "-----BEGIN RSA PRIVATE KEY-----\nMAMCAQA=\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap();
        assert_eq!(label, "RSA PRIVATE KEY");
        assert_eq!(der, [0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(pem_to_der("nonsense").is_none());
    }
}
