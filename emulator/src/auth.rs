//! Credentials: RS256 JWTs, authorization codes with PKCE, access and refresh tokens, and
//! system-user tickets.
//!
//! JWTs are encoded by hand (`base64url(header).base64url(payload).base64url(signature)`) and
//! signed with the committed test key in [`crate::test_keys`]. Access tokens look like
//! SuperOffice's (`8A:Cust12345.…`), are opaque and expire after the configured TTL on the
//! emulator clock. Refresh tokens never rotate (FACTS §1.4). Tickets (`7T:…`) have a sliding
//! expiry: every use restarts the window.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ring::rand::SystemRandom;
use ring::signature::{
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::clock::{Ts, civil_from_days};
use crate::error::Error;

/// Prefix of SuperOffice's identity claims.
pub const CLAIM: &str = "http://schemes.superoffice.net/identity/";

/// The signing key and the system-user verification key (ring: constant-time RSA).
#[derive(Clone)]
pub struct Keys {
    signing: std::sync::Arc<RsaKeyPair>,
    /// Key id published in the JWKS and JWT headers.
    pub kid: String,
    /// The public signing key: modulus and exponent, big-endian.
    pub public: ring::rsa::PublicKeyComponents<Vec<u8>>,
    /// PKCS#1 `RSAPublicKey` DER of the system-user key.
    system_user: Vec<u8>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn parse_private(pem: &str) -> Result<RsaKeyPair, Error> {
    let der = crate::rsa_der::private_pem_to_pkcs1(pem).ok_or_else(|| {
        Error::Key("private key: not a PKCS#8 or PKCS#1 RSA private key PEM".into())
    })?;
    RsaKeyPair::from_der(&der).map_err(|e| Error::Key(format!("private key: {e}")))
}

fn parse_public(pem: &str) -> Result<Vec<u8>, Error> {
    crate::rsa_der::public_pem_to_pkcs1(pem)
        .ok_or_else(|| Error::Key("public key: not an SPKI or PKCS#1 RSA public key PEM".into()))
}

/// RSA PKCS#1 v1.5 / SHA-256 signature of `data`.
fn rs256(key: &RsaKeyPair, data: &[u8]) -> Vec<u8> {
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), data, &mut sig)
        .expect("RSA signing with a valid key and a correctly sized buffer");
    sig
}

impl Keys {
    /// Loads the signing key and the system-user public key.
    pub fn load(signing_pem: &str, system_user_public_pem: &str) -> Result<Keys, Error> {
        let private = parse_private(signing_pem)?;
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(private.public());
        let kid = hex::encode(&Sha256::digest(&public.n)[..8]);
        Ok(Keys {
            signing: std::sync::Arc::new(private),
            kid,
            public,
            system_user: parse_public(system_user_public_pem)?,
        })
    }

    /// Encodes and signs a JWT with RS256.
    pub fn jwt(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let mut out = URL_SAFE_NO_PAD.encode(header.to_string());
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = rs256(&self.signing, out.as_bytes());
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig));
        out
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.public.n),
            "e": URL_SAFE_NO_PAD.encode(&self.public.e),
        }]})
    }

    /// Verifies a `SignedSystemToken` (`{system_token}.{yyyyMMddHHmm}.{base64 signature}`) and
    /// returns the system token and the signing time.
    pub fn verify_system_token(&self, signed: &str) -> Result<(String, Ts), String> {
        let (data, sig) = signed
            .rsplit_once('.')
            .ok_or("SignedSystemToken must be '{token}.{yyyyMMddHHmm}.{signature}'")?;
        let (token, stamp) = data
            .rsplit_once('.')
            .ok_or("SignedSystemToken must be '{token}.{yyyyMMddHHmm}.{signature}'")?;
        let sig = STANDARD
            .decode(sig.trim())
            .map_err(|_| "the signature is not base64".to_string())?;
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.system_user)
            .verify(data.as_bytes(), &sig)
            .map_err(|_| {
                "the signature does not verify with the registered public key".to_string()
            })?;
        let at = parse_stamp(stamp).ok_or("the timestamp is not yyyyMMddHHmm")?;
        Ok((token.to_string(), at))
    }
}

fn parse_stamp(s: &str) -> Option<Ts> {
    if s.len() != 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    let (y, mo, d, h, mi) = (n(0..4)?, n(4..6)?, n(6..8)?, n(8..10)?, n(10..12)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 {
        return None;
    }
    Some(Ts::from_parts(i64::from(y), mo, d, h, mi, 0))
}

/// `yyyyMMddHHmm` of a timestamp (UTC).
pub fn stamp(at: Ts) -> String {
    let (y, mo, d) = civil_from_days(at.day());
    let secs = at.0.rem_euclid(crate::clock::DAY);
    format!(
        "{y:04}{mo:02}{d:02}{:02}{:02}",
        secs / 3600,
        (secs / 60) % 60
    )
}

/// Signs a system token the way a partner application does: returns
/// `{system_token}.{yyyyMMddHHmm}.{base64(RSA-SHA256 signature)}`.
pub fn sign_system_token(
    private_key_pem: &str,
    system_token: &str,
    at: Ts,
) -> Result<String, Error> {
    let key = parse_private(private_key_pem)?;
    let data = format!("{system_token}.{}", stamp(at));
    let sig = rs256(&key, data.as_bytes());
    Ok(format!("{data}.{}", STANDARD.encode(sig)))
}

/// Who a credential belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// An interactive user (OAuth access token).
    User(i32),
    /// The system user (ticket).
    System(i32),
}

impl Principal {
    /// The associate id.
    pub fn associate(self) -> i32 {
        match self {
            Principal::User(a) | Principal::System(a) => a,
        }
    }
}

/// A pending authorization code.
#[derive(Debug, Clone)]
pub struct CodeGrant {
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI of the authorize request.
    pub redirect_uri: String,
    /// PKCE challenge and method.
    pub challenge: Option<(String, String)>,
    /// `nonce` to echo in the id_token.
    pub nonce: Option<String>,
    /// Expiry.
    pub expires: Ts,
}

#[derive(Debug, Clone, Copy)]
struct Expiring {
    principal: Principal,
    expires: Ts,
}

/// Issued credentials.
#[derive(Debug)]
pub struct Credentials {
    codes: HashMap<String, CodeGrant>,
    access: HashMap<String, Expiring>,
    refresh: HashMap<String, (String, Option<String>)>,
    tickets: HashMap<String, Expiring>,
    rng: ChaCha8Rng,
}

/// Outcome of checking a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Valid for this principal.
    Ok(Principal),
    /// Known but expired.
    Expired,
    /// Never issued (or revoked).
    Unknown,
}

impl Credentials {
    /// An empty store whose random values derive from `seed`.
    pub fn new(seed: u64) -> Self {
        Credentials {
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            tickets: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x70_6B_65_6E),
        }
    }

    /// `n` random bytes, base64url.
    pub fn random(&mut self, n: usize) -> String {
        let mut b = vec![0u8; n];
        self.rng.fill_bytes(&mut b);
        URL_SAFE_NO_PAD.encode(b)
    }

    /// Stores a new authorization code.
    pub fn new_code(&mut self, grant: CodeGrant) -> String {
        let code = self.random(32);
        self.codes.insert(code.clone(), grant);
        code
    }

    /// Consumes an authorization code (codes are single-use).
    pub fn take_code(&mut self, code: &str) -> Option<CodeGrant> {
        self.codes.remove(code)
    }

    /// Issues an access token for `principal` valid until `expires`.
    pub fn new_access(&mut self, ctx: &str, principal: Principal, expires: Ts) -> String {
        let token = format!("8A:{ctx}.{}", self.random(36));
        self.access
            .insert(token.clone(), Expiring { principal, expires });
        token
    }

    /// Issues a refresh token bound to a client (and the nonce-less id_token settings).
    pub fn new_refresh(&mut self, client_id: &str) -> String {
        let token = self.random(48);
        self.refresh
            .insert(token.clone(), (client_id.to_string(), None));
        token
    }

    /// The client a refresh token belongs to.
    pub fn refresh_client(&self, token: &str) -> Option<&str> {
        self.refresh.get(token).map(|(c, _)| c.as_str())
    }

    /// Issues a system-user ticket.
    pub fn new_ticket(&mut self, associate: i32, expires: Ts) -> String {
        let ticket = format!("7T:{}", self.random(40));
        self.tickets.insert(
            ticket.clone(),
            Expiring {
                principal: Principal::System(associate),
                expires,
            },
        );
        ticket
    }

    /// Checks an access token.
    pub fn check_access(&self, token: &str, now: Ts) -> Check {
        match self.access.get(token) {
            Some(e) if e.expires > now => Check::Ok(e.principal),
            Some(_) => Check::Expired,
            None => Check::Unknown,
        }
    }

    /// Checks a ticket and, if valid, slides its expiry to `now + ttl`.
    pub fn use_ticket(&mut self, ticket: &str, now: Ts, ttl: i64) -> Check {
        match self.tickets.get_mut(ticket) {
            Some(e) if e.expires > now => {
                e.expires = now.plus(ttl);
                Check::Ok(e.principal)
            }
            Some(_) => Check::Expired,
            None => Check::Unknown,
        }
    }

    /// Revokes a refresh token, access token or ticket.
    pub fn revoke(&mut self, token: &str) {
        self.refresh.remove(token);
        self.access.remove(token);
        self.tickets.remove(token);
    }

    /// Expires every access token and ticket (refresh tokens stay valid).
    pub fn expire_all(&mut self, now: Ts) -> usize {
        let past = now.plus(-1);
        let mut n = 0;
        for e in self.access.values_mut().chain(self.tickets.values_mut()) {
            e.expires = past;
            n += 1;
        }
        n
    }
}

/// Verifies a PKCE `code_verifier` against a challenge.
pub fn pkce_ok(verifier: &str, challenge: &str, method: &str) -> bool {
    use subtle::ConstantTimeEq;
    let computed = if method.eq_ignore_ascii_case("S256") {
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
    } else {
        verifier.to_string()
    };
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// Constant-time string comparison for secrets.
pub fn secret_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys;

    fn keys() -> Keys {
        Keys::load(
            test_keys::SIGNING_PRIVATE_KEY_PEM,
            test_keys::SYSTEM_USER_PUBLIC_KEY_PEM,
        )
        .unwrap()
    }

    #[test]
    fn jwt_has_three_parts_and_verifies() {
        let k = keys();
        let jwt = k.jwt(&json!({"sub": "x"}));
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        k.public
            .verify(
                &RSA_PKCS1_2048_8192_SHA256,
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &sig,
            )
            .unwrap();
        assert_eq!(k.jwks()["keys"][0]["kid"], k.kid.as_str());
    }

    #[test]
    fn system_tokens_verify_only_with_the_matching_key() {
        let k = keys();
        let at = Ts::from_parts(2026, 3, 5, 14, 22, 0);
        let signed =
            sign_system_token(test_keys::SYSTEM_USER_PRIVATE_KEY_PEM, "App-123", at).unwrap();
        assert!(signed.starts_with("App-123.202603051422."));
        assert_eq!(
            k.verify_system_token(&signed).unwrap(),
            ("App-123".to_string(), at)
        );
        let forged = sign_system_token(test_keys::SIGNING_PRIVATE_KEY_PEM, "App-123", at).unwrap();
        assert!(k.verify_system_token(&forged).is_err());
        let tampered = signed.replacen("App-123", "App-124", 1);
        assert!(k.verify_system_token(&tampered).is_err());
    }

    #[test]
    fn pkce_and_expiry() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_ok(verifier, challenge, "S256"));
        assert!(!pkce_ok("wrong", challenge, "S256"));
        assert!(pkce_ok("plain", "plain", "plain"));
        let mut c = Credentials::new(1);
        let t = c.new_access("Cust1", Principal::User(1), Ts(100));
        assert_eq!(c.check_access(&t, Ts(50)), Check::Ok(Principal::User(1)));
        assert_eq!(c.check_access(&t, Ts(100)), Check::Expired);
        assert_eq!(c.check_access("nope", Ts(0)), Check::Unknown);
        let ticket = c.new_ticket(2, Ts(100));
        assert_eq!(
            c.use_ticket(&ticket, Ts(90), 100),
            Check::Ok(Principal::System(2))
        );
        assert_eq!(
            c.use_ticket(&ticket, Ts(150), 100),
            Check::Ok(Principal::System(2)),
            "sliding"
        );
        c.expire_all(Ts(150));
        assert_eq!(c.use_ticket(&ticket, Ts(150), 100), Check::Expired);
    }
}
