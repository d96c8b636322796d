//! The little PEM/DER handling RSA keys need with `ring` (which reads PKCS#8 and PKCS#1 DER
//! only): PEM armour, PKCS#8 → PKCS#1, SPKI → PKCS#1, and the integers of a PKCS#1 private
//! key (tests turn them into SuperOffice's RSA-XML key form).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const SEQUENCE: u8 = 0x30;

/// The label (`PRIVATE KEY`, `RSA PRIVATE KEY`, `PUBLIC KEY` …) and the DER bytes of the first
/// PEM block in `pem`.
pub fn pem_to_der(pem: &str) -> Option<(String, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end = body.find(&format!("-----END {label}-----"))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).ok().map(|der| (label, der))
}

/// One DER element: `(tag, content, rest)`.
fn read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || input.len() < count {
            return None;
        }
        let len = input[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        input = &input[count..];
        len
    };
    (input.len() >= len).then(|| (tag, &input[..len], &input[len..]))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = read(input)?;
    (t == tag).then_some((content, rest))
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`.
pub fn pkcs8_to_pkcs1(der: &[u8]) -> Option<Vec<u8>> {
    let (info, _) = expect(der, SEQUENCE)?;
    let (_version, rest) = expect(info, INTEGER)?;
    let (_algorithm, rest) = expect(rest, SEQUENCE)?;
    let (key, _) = expect(rest, OCTET_STRING)?;
    Some(key.to_vec())
}

/// The PKCS#1 `RSAPublicKey` inside an X.509 `SubjectPublicKeyInfo`.
pub fn spki_to_pkcs1(der: &[u8]) -> Option<Vec<u8>> {
    let (info, _) = expect(der, SEQUENCE)?;
    let (_algorithm, rest) = expect(info, SEQUENCE)?;
    let (bits, _) = expect(rest, BIT_STRING)?;
    let (&unused, key) = bits.split_first()?;
    (unused == 0).then(|| key.to_vec())
}

/// The integers of a PKCS#1 `RSAPrivateKey` (`n, e, d, p, q, dp, dq, qinv`), big-endian
/// without leading zero bytes.
pub fn pkcs1_private_integers(der: &[u8]) -> Option<[Vec<u8>; 8]> {
    let (mut seq, _) = expect(der, SEQUENCE)?;
    let (_version, rest) = expect(seq, INTEGER)?;
    seq = rest;
    let mut out: [Vec<u8>; 8] = Default::default();
    for slot in &mut out {
        let (int, rest) = expect(seq, INTEGER)?;
        let start = int.iter().position(|b| *b != 0).unwrap_or(int.len());
        *slot = int[start..].to_vec();
        seq = rest;
    }
    Some(out)
}

/// A private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY` PEM) as PKCS#1 DER.
pub fn private_pem_to_pkcs1(pem: &str) -> Option<Vec<u8>> {
    match pem_to_der(pem)? {
        (label, der) if label == "PRIVATE KEY" => pkcs8_to_pkcs1(&der),
        (label, der) if label == "RSA PRIVATE KEY" => Some(der),
        _ => None,
    }
}

/// A public key (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY` PEM) as PKCS#1 DER.
pub fn public_pem_to_pkcs1(pem: &str) -> Option<Vec<u8>> {
    match pem_to_der(pem)? {
        (label, der) if label == "PUBLIC KEY" => spki_to_pkcs1(&der),
        (label, der) if label == "RSA PUBLIC KEY" => Some(der),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys;

    #[test]
    fn the_test_keys_parse_into_their_parts() {
        let pkcs1 = private_pem_to_pkcs1(test_keys::SYSTEM_USER_PRIVATE_KEY_PEM).unwrap();
        let [n, e, ..] = pkcs1_private_integers(&pkcs1).unwrap();
        assert_eq!(n.len(), 256, "2048-bit modulus");
        assert_eq!(e, [1, 0, 1]);
        let public = public_pem_to_pkcs1(test_keys::SYSTEM_USER_PUBLIC_KEY_PEM).unwrap();
        let (seq, _) = expect(&public, SEQUENCE).unwrap();
        let (n_pub, _) = expect(seq, INTEGER).unwrap();
        assert_eq!(&n_pub[n_pub.len() - 256..], n.as_slice());
        assert!(pem_to_der("no pem here").is_none());
        assert!(pkcs1_private_integers(&[0x30, 0x03, 0x02, 0x01]).is_none());
    }
}
