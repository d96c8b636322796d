//! Downloading SuperOffice's `Swagger-v1-REST.zip` and unpacking it (cargo feature `fetch`).
//!
//! Used by `cargo xtask spec fetch` (into `spec/upstream/`) and by the SDK's build script with
//! its opt-in `download-spec` feature (into `OUT_DIR`). The sha256 of the unpacked
//! `Swagger-v1-REST.json` is compared with `spec/superoffice.lock` **before** anything is
//! written: a different file is refused ([`Error::SpecHashMismatch`]) unless the caller accepts
//! a new pin ([`Pin::AcceptNew`]).
//!
//! HTTP is `ureq` with rustls (ring) and the webpki roots; zip reading is the `zip` crate with
//! deflate only.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::spec::sha256_hex;
use crate::{Error, Result};

/// Where the zip is published: SuperOffice's public documentation repository
/// (`SuperOfficeDocs/docs`, `downloads/api/Swagger-v1-REST.zip`), raw download.
pub const DEFAULT_URL: &str =
    "https://raw.githubusercontent.com/SuperOfficeDocs/docs/main/downloads/api/Swagger-v1-REST.zip";
/// Environment variable that overrides [`DEFAULT_URL`].
pub const URL_ENV_VAR: &str = "SUPEROFFICE_OPENAPI_URL";
/// The file inside the zip that the generator reads.
pub const SPEC_FILE: &str = "Swagger-v1-REST.json";
/// Largest download accepted (the zip is a few MiB).
pub const MAX_DOWNLOAD_BYTES: u64 = 128 * 1024 * 1024;
/// Largest unpacked entry accepted (the JSON is about 5 MiB).
pub const MAX_ENTRY_BYTES: u64 = 256 * 1024 * 1024;

/// The URL to download from: an explicit one, else `SUPEROFFICE_OPENAPI_URL`, else
/// [`DEFAULT_URL`].
pub fn url(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_string)
        .or_else(|| {
            std::env::var(URL_ENV_VAR)
                .ok()
                .filter(|u| !u.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_URL.to_string())
}

/// What the downloaded spec must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// The sha256 from `spec/superoffice.lock`; anything else is refused.
    Require(String),
    /// Any file is accepted (`--accept-new`; the caller re-pins).
    AcceptNew,
}

/// The outcome of [`fetch`].
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Path of the unpacked `Swagger-v1-REST.json`.
    pub spec: PathBuf,
    /// sha256 of it.
    pub sha256: String,
    /// Every file written (the spec and whatever else the zip holds), in zip order.
    pub files: Vec<PathBuf>,
}

/// Downloads the zip from `url`, checks the spec's hash against `pin` and unpacks the zip into
/// `dest` (created if missing). Nothing is written when the hash does not match.
pub fn fetch(url: &str, dest: &Path, pin: &Pin) -> Result<Fetched> {
    let bytes = download(url)?;
    unpack(&bytes, dest, pin).map_err(|e| match e {
        Error::Fetch(message) => Error::Fetch(format!("{url}: {message}")),
        other => other,
    })
}

/// GETs `url` (redirects followed, 2 minutes at most, [`MAX_DOWNLOAD_BYTES`] at most).
pub fn download(url: &str) -> Result<Vec<u8>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| Error::Fetch(format!("downloading {url}: {e}")))?;
    response
        .body_mut()
        .with_config()
        .limit(MAX_DOWNLOAD_BYTES)
        .read_to_vec()
        .map_err(|e| Error::Fetch(format!("reading the body of {url}: {e}")))
}

/// Unpacks `zip` into `dest` after checking the hash of its `Swagger-v1-REST.json`.
///
/// Entries are written flat by file name (folders inside the zip are dropped); a name that is
/// not a plain file name after that (`..`, absolute paths) is refused, as is a zip without
/// the spec. Each file is written to a temporary name and renamed, so a reader never sees
/// half a file.
pub fn unpack(zip: &[u8], dest: &Path, pin: &Pin) -> Result<Fetched> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip))
        .map_err(|e| Error::Fetch(format!("not a zip file: {e}")))?;
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| Error::Fetch(format!("zip entry {index}: {e}")))?;
        if entry.is_dir() {
            continue;
        }
        let raw_name = entry
            .name()
            .map_err(|e| Error::Fetch(format!("zip entry {index} has an unreadable name: {e}")))?
            .into_owned();
        let name = entry
            .enclosed_name()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| !n.is_empty() && n != "." && n != "..")
            .ok_or_else(|| {
                Error::Fetch(format!(
                    "zip entry {raw_name:?} has an unsafe or empty name"
                ))
            })?;
        let mut bytes = Vec::new();
        (&mut entry)
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Fetch(format!("zip entry {raw_name:?}: {e}")))?;
        if bytes.len() as u64 > MAX_ENTRY_BYTES {
            return Err(Error::Fetch(format!(
                "zip entry {raw_name:?} unpacks to more than {MAX_ENTRY_BYTES} bytes"
            )));
        }
        if entries.iter().any(|(n, _)| *n == name) {
            return Err(Error::Fetch(format!("the zip holds {name} twice")));
        }
        entries.push((name, bytes));
    }
    let spec = entries
        .iter()
        .find(|(name, _)| name == SPEC_FILE)
        .ok_or_else(|| {
            Error::Fetch(format!(
                "the zip has no {SPEC_FILE} (entries: {})",
                entries
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let sha256 = sha256_hex(&spec.1);
    if let Pin::Require(expected) = pin
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(Error::SpecHashMismatch {
            expected: expected.clone(),
            actual: sha256,
        });
    }
    std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    let mut files = Vec::with_capacity(entries.len());
    for (name, bytes) in &entries {
        let path = dest.join(name);
        let partial = dest.join(format!(".{name}.partial"));
        std::fs::write(&partial, bytes).map_err(|e| Error::io(&partial, e))?;
        std::fs::rename(&partial, &path).map_err(|e| Error::io(&path, e))?;
        files.push(path);
    }
    Ok(Fetched {
        spec: dest.join(SPEC_FILE),
        sha256,
        files,
    })
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    /// A zip of `(name, bytes)` entries, deflated.
    pub(crate) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            writer.start_file(*name, options).unwrap();
            writer.write_all(bytes).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    /// Serves `body` for every request on 127.0.0.1 (one thread); returns the base URL.
    fn serve(body: Vec<u8>, status: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/zip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        format!("http://{addr}")
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "codegen-fetch-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn downloads_checks_the_pin_and_unpacks_flat() {
        let spec = br#"{"swagger":"2.0","info":{"version":"v1-REST"}}"#;
        let zip = zip_of(&[
            ("api/Swagger-v1-REST.json", spec),
            ("api/Swagger-v1-Agents.json", b"{}"),
        ]);
        let url = format!("{}/Swagger-v1-REST.zip", serve(zip, "200 OK"));
        let dest = tempdir("ok");
        let fetched = fetch(&url, &dest, &Pin::Require(sha256_hex(spec))).unwrap();
        assert_eq!(fetched.sha256, sha256_hex(spec));
        assert_eq!(fetched.spec, dest.join(SPEC_FILE));
        assert_eq!(std::fs::read(&fetched.spec).unwrap(), spec);
        assert_eq!(
            std::fs::read(dest.join("Swagger-v1-Agents.json")).unwrap(),
            b"{}"
        );
        assert_eq!(fetched.files.len(), 2);
    }

    #[test]
    fn another_hash_is_refused_and_nothing_is_written() {
        let zip = zip_of(&[(SPEC_FILE, b"{\"other\":true}")]);
        let url = serve(zip, "200 OK");
        let dest = tempdir("mismatch");
        let pinned = sha256_hex(b"the pinned one");
        let err = fetch(&url, &dest, &Pin::Require(pinned.clone())).unwrap_err();
        match &err {
            Error::SpecHashMismatch { expected, actual } => {
                assert_eq!(expected, &pinned);
                assert_eq!(actual, &sha256_hex(b"{\"other\":true}"));
            }
            other => panic!("expected SpecHashMismatch, got {other:?}"),
        }
        assert!(err.to_string().contains("--accept-new"), "{err}");
        assert!(!dest.exists(), "nothing may be written on a mismatch");
        // Accepting a new pin writes it.
        let fetched = fetch(&url, &dest, &Pin::AcceptNew).unwrap();
        assert_eq!(fetched.sha256, sha256_hex(b"{\"other\":true}"));
    }

    #[test]
    fn http_errors_non_zips_and_zips_without_the_spec_are_errors() {
        let dest = tempdir("bad");
        let err = fetch(
            &serve(b"gone".to_vec(), "404 Not Found"),
            &dest,
            &Pin::AcceptNew,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("404"), "{err}");
        let err = fetch(&serve(b"<html>".to_vec(), "200 OK"), &dest, &Pin::AcceptNew)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a zip"), "{err}");
        let zip = zip_of(&[("README.md", b"hi")]);
        let err = fetch(&serve(zip, "200 OK"), &dest, &Pin::AcceptNew)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(SPEC_FILE) && err.contains("README.md"),
            "{err}"
        );
        assert!(!dest.exists());
    }

    #[test]
    fn unsafe_entry_names_are_refused() {
        let zip = zip_of(&[("../../evil.json", b"x"), (SPEC_FILE, b"{}")]);
        let dest = tempdir("unsafe");
        let err = unpack(&zip, &dest, &Pin::AcceptNew)
            .unwrap_err()
            .to_string();
        assert!(err.contains("evil.json"), "{err}");
        assert!(!dest.exists());
    }

    #[test]
    fn url_precedence() {
        assert_eq!(
            url(Some("http://127.0.0.1:1/x.zip")),
            "http://127.0.0.1:1/x.zip"
        );
        if std::env::var_os(URL_ENV_VAR).is_none() {
            assert_eq!(url(None), DEFAULT_URL);
        }
    }
}
