//! Image uploads: the eight `SaveImage` operations (PUT and POST
//! `/api/v1/{Contact|Person|Project|Product}/{id}/Image`) are `multipart/form-data`, which
//! progenitor cannot generate, so the generator excludes them (`multipart = "hand-written"` in
//! `spec/superoffice.toml`) and they live here.
//!
//! The body is one form field named `image` holding the file. It is built in memory, so a
//! failed PUT can be retried like any other idempotent request.

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderValue;

use crate::{Client, Error, RawRequest, Result};

/// Whose image to replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageOwner {
    /// `/api/v1/Contact/{contactId}/Image`.
    Contact,
    /// `/api/v1/Person/{personId}/Image`.
    Person,
    /// `/api/v1/Project/{projectId}/Image`.
    Project,
    /// `/api/v1/Product/{productId}/Image`.
    Product,
}

impl ImageOwner {
    fn name(self) -> &'static str {
        match self {
            ImageOwner::Contact => "Contact",
            ImageOwner::Person => "Person",
            ImageOwner::Project => "Project",
            ImageOwner::Product => "Product",
        }
    }

    fn operation(self) -> &'static str {
        match self {
            ImageOwner::Contact => "contact_save_image",
            ImageOwner::Person => "person_save_image",
            ImageOwner::Project => "project_save_image",
            ImageOwner::Product => "product_save_image",
        }
    }
}

/// Stores `image` (`content_type` such as `image/png`, `image/jpeg`, `image/gif`, `image/tiff`)
/// as the owner's image with `PUT …/Image`; answers the blob id SuperOffice reports.
pub async fn save_image(
    client: &Client,
    owner: ImageOwner,
    id: i32,
    image: Bytes,
    content_type: &str,
) -> Result<i32> {
    if !content_type.starts_with("image/") {
        return Err(Error::InvalidRequest(format!(
            "content type {content_type:?} is not an image type"
        )));
    }
    let boundary = format!("superoffice-rs-{:016x}", rand::random::<u64>());
    let body = multipart_body(&boundary, content_type, &image);
    let header = HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}"))
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    let request = RawRequest::new(Method::PUT, format!("/api/v1/{}/{id}/Image", owner.name()))
        .header(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        )
        .body(header, body);
    let response = client.send_raw(owner.operation(), request).await?;
    let bytes = response.bytes().await.map_err(Error::Transport)?;
    serde_json::from_slice::<i32>(&bytes).map_err(|e| Error::Decode {
        message: format!("SaveImage answer: {e}"),
        excerpt: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
    })
}

fn multipart_body(boundary: &str, content_type: &str, image: &[u8]) -> Bytes {
    let extension = content_type.trim_start_matches("image/");
    let mut body = Vec::with_capacity(image.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"image.{extension}\"\r\n\
             Content-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Bytes::from(body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_body_is_one_image_field() {
        let body = super::multipart_body("B", "image/png", b"\x89PNG");
        assert_eq!(
            body.as_ref(),
            b"--B\r\nContent-Disposition: form-data; name=\"image\"; filename=\"image.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--B--\r\n"
        );
    }
}
