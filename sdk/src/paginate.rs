//! Pagination over list and archive endpoints, as `Stream`s of pages or rows.
//!
//! SuperOffice has no cursor tokens (`odata.nextLink` is always null). Two strategies:
//!
//! - [`Strategy::Keyset`] (recommended): order by the primary key and ask for `pk gt last`
//!   page after page. Each page is a fresh, cheap query; rows inserted or deleted meanwhile do
//!   not shift the window.
//! - [`Strategy::Skip`]: `$skip` += page size with the query's own ordering. Simple, but deep
//!   pages cost the server more and concurrent changes can shift rows between pages; keep a
//!   unique key last in `$orderBy`.
//!
//! A page shorter than the page size ends the stream. A page without its `value` array is
//! [`Error::MissingValue`], never an empty page (which would end the stream, or make a caller
//! think records were deleted).

use futures::Stream;
use futures::stream::{self, TryStreamExt};
use reqwest::Method;

use crate::odata::{Order, Query, Row, col};
use crate::{Client, Error, RawRequest, Result};

/// How to walk the pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// `$skip` paging with the query's ordering.
    Skip,
    /// Keyset paging on a primary-key column (`contactId`): `$orderBy=pk` and `pk gt last`.
    /// The query's own `$orderBy` is replaced.
    Keyset {
        /// The primary-key column (it is added to `$select` if missing).
        key: String,
    },
}

/// Where the rows come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `GET /api/v1/{Entity}` (the entity's list archive), e.g. `Contact`.
    List(String),
    /// `GET /api/v1/Archive/{provider}`, e.g. `RecycleContact`.
    Archive(String),
}

impl Source {
    /// The request path (`/api/v1/Contact`, `/api/v1/Archive/{provider}`).
    pub fn path(&self) -> String {
        match self {
            Source::List(entity) => format!("/api/v1/{entity}"),
            Source::Archive(provider) => format!("/api/v1/Archive/{provider}"),
        }
    }
}

/// One page of rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The rows, in the order the server sent them.
    pub rows: Vec<Row>,
    /// The query that produced them (with `$top`, `$skip` or the keyset filter applied).
    pub query: Query,
    /// 0 for the first page.
    pub index: usize,
}

#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(default)]
    value: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
}

/// Decodes an OData page body: its `value` array of row objects. A body without `value` (or
/// with `"value": null`) is [`Error::MissingValue`], never an empty page; `path` names the
/// request in the error.
pub fn decode_page(path: &str, bytes: &[u8]) -> Result<Vec<Row>> {
    let excerpt = || String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
    let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| Error::Decode {
        message: format!("OData page {path}: {e}"),
        excerpt: excerpt(),
    })?;
    let rows = envelope.value.ok_or_else(|| Error::MissingValue {
        path: path.to_string(),
        excerpt: excerpt(),
    })?;
    Ok(rows.into_iter().map(Row).collect())
}

/// Fetches one page: the query as given.
pub async fn fetch(client: &Client, source: &Source, query: &Query) -> Result<Vec<Row>> {
    let path = format!("{}?{}", source.path(), query.to_query_string());
    let response = client
        .send_raw("odata_page", RawRequest::new(Method::GET, path.clone()))
        .await?;
    let bytes = response.bytes().await.map_err(Error::Transport)?;
    decode_page(&path, &bytes)
}

struct State {
    query: Query,
    next: Cursor,
    index: usize,
}

enum Cursor {
    Skip(u32),
    After(Option<i64>),
    Done,
}

/// The pages of a query, fetched one after another as the stream is polled.
pub fn pages<'a>(
    client: &'a Client,
    source: Source,
    query: Query,
    page_size: u32,
    strategy: Strategy,
) -> impl Stream<Item = Result<Page>> + 'a {
    let page_size = page_size.max(1);
    let (query, next, key) = match &strategy {
        Strategy::Skip => (query, Cursor::Skip(0), None),
        Strategy::Keyset { key } => {
            let query = if query.selected().iter().any(|c| c == key) || query.selected().is_empty()
            {
                query
            } else {
                query.select([key.clone()])
            };
            (
                query.set_order_by(vec![(key.clone(), Order::Asc)]),
                Cursor::After(None),
                Some(key.clone()),
            )
        }
    };
    let state = State {
        query,
        next,
        index: 0,
    };
    stream::try_unfold(state, move |mut state| {
        let source = source.clone();
        let key = key.clone();
        async move {
            let page_query = match &state.next {
                Cursor::Done => return Ok(None),
                Cursor::Skip(skip) => state.query.clone().top(page_size).skip(*skip),
                Cursor::After(None) => state.query.clone().top(page_size),
                Cursor::After(Some(last)) => {
                    let key = key.as_deref().expect("keyset paging has a key");
                    state
                        .query
                        .clone()
                        .filter(col(key).gt(*last))
                        .top(page_size)
                }
            };
            let rows = fetch(client, &source, &page_query).await?;
            let full = rows.len() >= page_size as usize;
            state.next = match (&state.next, full) {
                (_, false) => Cursor::Done,
                (Cursor::Skip(skip), true) => Cursor::Skip(skip + page_size),
                (Cursor::After(previous), true) => {
                    let key = key.as_deref().expect("keyset paging has a key");
                    let last = rows
                        .last()
                        .and_then(|r| r.int(key).or_else(|| r.primary_key()))
                        .ok_or_else(|| Error::Decode {
                            message: format!("keyset paging: the last row has no `{key}`"),
                            excerpt: String::new(),
                        })?;
                    if previous.is_some_and(|p| last <= p) {
                        return Err(Error::Decode {
                            message: format!(
                                "keyset paging on `{key}` did not advance (last {last}); is it the primary key?"
                            ),
                            excerpt: String::new(),
                        });
                    }
                    Cursor::After(Some(last))
                }
                (Cursor::Done, true) => Cursor::Done,
            };
            let page = Page {
                rows,
                query: page_query,
                index: state.index,
            };
            state.index += 1;
            Ok(Some((page, state)))
        }
    })
}

/// The rows of a query, page by page.
pub fn rows<'a>(
    client: &'a Client,
    source: Source,
    query: Query,
    page_size: u32,
    strategy: Strategy,
) -> impl Stream<Item = Result<Row>> + 'a {
    pages(client, source, query, page_size, strategy)
        .map_ok(|page| stream::iter(page.rows.into_iter().map(Ok)))
        .try_flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_without_value_is_an_error_not_an_empty_page() {
        let path = "/api/v1/Contact?$select=contactId";
        for body in [r#"{"odata.nextLink":null}"#, r#"{"value":null}"#, "{}"] {
            match decode_page(path, body.as_bytes()) {
                Err(Error::MissingValue { path: p, excerpt }) => {
                    assert_eq!(p, path);
                    assert_eq!(excerpt, body);
                }
                other => panic!("{body}: expected MissingValue, got {other:?}"),
            }
        }
        let error = decode_page(path, b"{}").unwrap_err().to_string();
        assert!(error.contains(path) && error.contains("`value`"), "{error}");
        assert!(decode_page(path, br#"{"value":[]}"#).unwrap().is_empty());
        let rows = decode_page(path, br#"{"value":[{"contactId":4}]}"#).unwrap();
        assert_eq!(rows[0].int("contactId"), Some(4));
        assert!(matches!(
            decode_page(path, br#"{"value":[1]}"#),
            Err(Error::Decode { .. })
        ));
    }
}
