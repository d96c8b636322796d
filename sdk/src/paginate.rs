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
//!
//! Keyset paging is one implementation, [`Keyset`], which [`pages`] streams and which callers
//! that need more drive page by page: resuming after a given key (a sync that stopped in the
//! middle of a scan), the `$top` cap probe (a short page is not taken for the end of the data
//! until a request for the rows after it comes back empty), and [`keyset_page`] for one page.
//! Keyset answers are checked: every row carries the key ([`Error::MissingKey`]) and a page
//! advances past the key it was asked to start after ([`Error::KeysetStalled`]).

use futures::Stream;
use std::time::Instant;

use futures::stream::{self, StreamExt, TryStreamExt};
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

/// One keyset page: `query` with `key gt after` (when given), `$orderBy=key` and `$top=top`.
/// Every row must carry the key (the column, or `PrimaryKey`): a row without it is
/// [`Error::MissingKey`], never skipped; a body without `value` is [`Error::MissingValue`].
pub async fn keyset_page(
    client: &Client,
    source: &Source,
    query: &Query,
    key: &str,
    after: Option<i64>,
    top: u32,
) -> Result<Vec<Row>> {
    let query = keyset_query(query, key, after, top);
    let rows = fetch(client, source, &query).await?;
    check_keys(&page_path(source, &query), key, &rows)?;
    Ok(rows)
}

fn keyset_query(query: &Query, key: &str, after: Option<i64>, top: u32) -> Query {
    let mut query = query.clone();
    if let Some(after) = after {
        query = query.filter(col(key).gt(after));
    }
    query
        .set_order_by(vec![(key.to_string(), Order::Asc)])
        .top(top.max(1))
}

fn page_path(source: &Source, query: &Query) -> String {
    format!("{}?{}", source.path(), query.to_query_string())
}

/// The key of a keyset row: the key column, else `PrimaryKey`.
fn row_key(row: &Row, key: &str) -> Option<i64> {
    row.int(key).or_else(|| row.primary_key())
}

fn check_keys(path: &str, key: &str, rows: &[Row]) -> Result<()> {
    match rows.iter().position(|r| row_key(r, key).is_none()) {
        Some(row) => Err(Error::MissingKey {
            path: path.to_string(),
            key: key.to_string(),
            row,
            rows: rows.len(),
        }),
        None => Ok(()),
    }
}

/// Keyset paging over one query, a page per [`Keyset::next_page`]: `$orderBy=key`,
/// `key gt last` page after page, optionally resuming after a given key.
///
/// A page with fewer rows than the page size ends the scan. The default and maximum `$top` of
/// SuperOffice are undocumented, and a server that answers fewer rows than asked although more
/// exist would make a short page look like the end of the data. With
/// [`Keyset::probe_cap`]`(min)`, a short page of at least `min` rows is therefore followed by
/// one more request for the rows after it: rows there mean the server caps `$top` at the short
/// page's length ([`KeysetPage::cap`]); the scan goes on with that page size, and the probed
/// rows come as the next page (fetched once, not again). An empty probe confirms the end.
///
/// Answers of unexpected shape end the scan with an error, never with "no more rows": no
/// `value` array ([`Error::MissingValue`]), a row without the key ([`Error::MissingKey`]), a
/// page that does not advance past the key it was asked to start after
/// ([`Error::KeysetStalled`]).
#[derive(Clone, Debug)]
pub struct Keyset {
    source: Source,
    query: Query,
    key: String,
    after: Option<i64>,
    page_size: u32,
    probe_min: Option<usize>,
    /// Rows the probe fetched: the next page, with its query and when it was read.
    probed: Option<(Vec<Row>, Query, Instant)>,
    done: bool,
    index: usize,
}

/// A page of a [`Keyset`] scan.
#[derive(Clone, Debug)]
pub struct KeysetPage {
    /// The rows, in key order.
    pub rows: Vec<Row>,
    /// The query that produced them (keyset filter, `$orderBy`, `$top` applied).
    pub query: Query,
    /// 0 for the first page of the scan.
    pub index: usize,
    /// The highest key of the page (`None` for an empty page).
    pub last: Option<i64>,
    /// Whether more pages follow: the page is full, or the probe found rows after it.
    pub more: bool,
    /// Requests made for this page: 1, or 2 when an empty probe confirmed the end.
    pub requests: u64,
    /// The server's `$top` cap, when this page revealed it (the probe found rows after a short
    /// page): the page's length. The scan uses it as its page size from here on.
    pub cap: Option<u32>,
    /// When the answer was read.
    pub read_at: Instant,
}

impl Keyset {
    /// Keyset paging of `query` from `source` on the key column `key` (added to `$select` if
    /// the query selects columns but not the key); the query's own `$orderBy` is replaced.
    /// Page size 100 until [`Keyset::page_size`] says otherwise; no probe.
    pub fn new(source: Source, query: Query, key: impl Into<String>) -> Self {
        let key = key.into();
        let query = if query.selected().contains(&key) || query.selected().is_empty() {
            query
        } else {
            query.select([key.clone()])
        };
        Keyset {
            source,
            query,
            key,
            after: None,
            page_size: 100,
            probe_min: None,
            probed: None,
            done: false,
            index: 0,
        }
    }

    /// Rows asked for per page (`$top`), at least 1.
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// Resumes after `key` (`None`: from the start): the first page asks for `key gt after`.
    pub fn after(mut self, after: Option<i64>) -> Self {
        self.after = after;
        self
    }

    /// Probes a short page of at least `min` rows for a server-side `$top` cap (see above).
    pub fn probe_cap(mut self, min: usize) -> Self {
        self.probe_min = Some(min);
        self
    }

    /// The page size in use (lowered to the server's cap once one was seen).
    pub fn current_page_size(&self) -> u32 {
        self.page_size
    }

    /// The rows the probe already fetched for the next page, if any.
    pub fn probed_rows(&self) -> Option<&[Row]> {
        self.probed.as_ref().map(|(rows, _, _)| rows.as_slice())
    }

    /// The next page, or `None` once a page ended the scan (no request is made then). The first
    /// call always makes a request, so a scan yields at least one (possibly empty) page.
    pub async fn next_page(&mut self, client: &Client) -> Result<Option<KeysetPage>> {
        if self.done {
            return Ok(None);
        }
        let (rows, query, read_at) = match self.probed.take() {
            Some(probed) => probed,
            None => {
                let query = keyset_query(&self.query, &self.key, self.after, self.page_size);
                let rows = fetch(client, &self.source, &query).await?;
                (rows, query, Instant::now())
            }
        };
        let path = || page_path(&self.source, &query);
        check_keys(&path(), &self.key, &rows)?;
        let last = rows.iter().filter_map(|r| row_key(r, &self.key)).max();
        if let (Some(after), Some(last)) = (self.after, last)
            && last <= after
        {
            return Err(Error::KeysetStalled {
                path: path(),
                key: self.key.clone(),
                after,
                last,
            });
        }
        let mut requests = 1;
        let mut cap = None;
        let mut more = rows.len() >= self.page_size as usize;
        if !more
            && let Some(min) = self.probe_min
            && rows.len() >= min
            && let Some(last) = last
        {
            let probe = keyset_query(&self.query, &self.key, Some(last), self.page_size);
            let probed = fetch(client, &self.source, &probe).await?;
            if probed.is_empty() {
                requests += 1;
            } else {
                let len = rows.len() as u32;
                cap = Some(len);
                self.page_size = len;
                self.probed = Some((probed, probe, Instant::now()));
                more = true;
            }
        }
        if more {
            self.after = last;
        } else {
            self.done = true;
        }
        let page = KeysetPage {
            rows,
            query,
            index: self.index,
            last,
            more,
            requests,
            cap,
            read_at,
        };
        self.index += 1;
        Ok(Some(page))
    }
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
    match strategy {
        Strategy::Keyset { key } => {
            let keyset = Keyset::new(source, query, key).page_size(page_size);
            stream::try_unfold(keyset, move |mut keyset| async move {
                Ok(keyset.next_page(client).await?.map(|page| {
                    let page = Page {
                        rows: page.rows,
                        query: page.query,
                        index: page.index,
                    };
                    (page, keyset)
                }))
            })
            .left_stream()
        }
        Strategy::Skip => stream::try_unfold(Some(0u32), move |skip| {
            let source = source.clone();
            let query = query.clone();
            async move {
                let Some(skip) = skip else {
                    return Ok(None);
                };
                let page_query = query.top(page_size).skip(skip);
                let rows = fetch(client, &source, &page_query).await?;
                let next = (rows.len() >= page_size as usize).then_some(skip + page_size);
                let page = Page {
                    rows,
                    query: page_query,
                    index: (skip / page_size) as usize,
                };
                Ok(Some((page, next)))
            }
        })
        .right_stream(),
    }
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

    /// An archive of `keys` on 127.0.0.1 that answers `contactId gt N` keyset pages with at most
    /// `cap` rows, or, while `body` is set, that body; `seen` counts the requests.
    struct Archive {
        client: Client,
        seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        body: std::sync::Arc<std::sync::Mutex<Option<String>>>,
        targets: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    async fn archive(keys: Vec<i64>, cap: usize) -> Archive {
        use std::sync::{Arc, Mutex, atomic::AtomicUsize, atomic::Ordering};
        let seen = Arc::new(AtomicUsize::new(0));
        let body: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let (seen_s, body_s, targets_s) = (seen.clone(), body.clone(), targets.clone());
        let app = axum::Router::new().fallback(move |uri: http::Uri| {
            let (seen, body, targets, keys) = (
                seen_s.clone(),
                body_s.clone(),
                targets_s.clone(),
                keys.clone(),
            );
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                targets.lock().unwrap().push(uri.to_string());
                let json = [(http::header::CONTENT_TYPE, "application/json")];
                if let Some(body) = body.lock().unwrap().clone() {
                    return (json, body);
                }
                let pairs: Vec<(String, String)> =
                    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                        .into_owned()
                        .collect();
                let param = |name: &str| {
                    pairs
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                };
                let after = param("$filter")
                    .and_then(|f| f.split("contactId gt ").nth(1).map(str::to_string))
                    .and_then(|rest| {
                        rest.trim_end_matches(')')
                            .split_whitespace()
                            .next()
                            .and_then(|n| n.parse::<i64>().ok())
                    })
                    .unwrap_or(i64::MIN);
                let top: usize = param("$top").unwrap().parse().unwrap();
                let value: Vec<serde_json::Value> = keys
                    .iter()
                    .filter(|k| **k > after)
                    .take(top.min(cap))
                    .map(|k| serde_json::json!({ "contactId": k, "name": format!("C{k}") }))
                    .collect();
                (json, serde_json::json!({ "value": value }).to_string())
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = Client::builder()
            .base_url(format!("http://{addr}/Cust1"))
            .auth(crate::auth::StaticAuth::bearer("token"))
            .build()
            .unwrap();
        Archive {
            client,
            seen,
            body,
            targets,
        }
    }

    impl Archive {
        fn requests(&self) -> usize {
            self.seen.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    fn contacts() -> Keyset {
        Keyset::new(
            Source::List("Contact".into()),
            Query::new().select(["contactId", "name"]),
            "contactId",
        )
    }

    /// Every page of a scan: (keys, more, requests, cap).
    async fn scan(
        archive: &Archive,
        mut keyset: Keyset,
    ) -> Result<Vec<(Vec<i64>, bool, u64, Option<u32>)>> {
        let mut pages = Vec::new();
        while let Some(page) = keyset.next_page(&archive.client).await? {
            let keys = page
                .rows
                .iter()
                .map(|r| r.int("contactId").unwrap())
                .collect::<Vec<_>>();
            assert_eq!(page.last, keys.iter().copied().max());
            assert_eq!(page.index, pages.len());
            pages.push((keys, page.more, page.requests, page.cap));
        }
        Ok(pages)
    }

    #[tokio::test]
    async fn keyset_pages_in_key_order_and_resumes_after_a_key() {
        let archive = archive((1..=25).collect(), usize::MAX).await;
        let pages = scan(&archive, contacts().page_size(10)).await.unwrap();
        let lens: Vec<usize> = pages.iter().map(|p| p.0.len()).collect();
        assert_eq!(lens, [10, 10, 5]);
        assert_eq!(
            pages.iter().map(|p| p.1).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!(
            pages.iter().flat_map(|p| p.0.clone()).collect::<Vec<_>>(),
            (1..=25).collect::<Vec<_>>()
        );
        assert_eq!(archive.requests(), 3, "one request a page");
        let targets = archive.targets.lock().unwrap().clone();
        assert!(
            targets[1].contains("contactId%20gt%2010") || targets[1].contains("contactId+gt+10"),
            "{targets:?}"
        );

        // Resuming after 20: the first page asks for the keys after it.
        let archive = self::archive((1..=25).collect(), usize::MAX).await;
        let pages = scan(&archive, contacts().page_size(10).after(Some(20)))
            .await
            .unwrap();
        assert_eq!(pages, [((21..=25).collect(), false, 1, None)]);
        assert_eq!(archive.requests(), 1);

        // A full last page costs one more (empty) request; an empty archive yields one page.
        let archive = self::archive((1..=20).collect(), usize::MAX).await;
        let pages = scan(&archive, contacts().page_size(10)).await.unwrap();
        assert_eq!(pages.len(), 3);
        assert_eq!(pages[2], (vec![], false, 1, None));
        let archive = self::archive(vec![], usize::MAX).await;
        assert_eq!(
            scan(&archive, contacts()).await.unwrap(),
            [(vec![], false, 1, None)]
        );
    }

    #[tokio::test]
    async fn the_probe_finds_a_top_cap_and_confirms_an_end() {
        // The server answers at most 120 rows although 200 are asked for.
        let archive = archive((1..=300).collect(), 120).await;
        let pages = scan(&archive, contacts().page_size(200).probe_cap(100))
            .await
            .unwrap();
        let summary: Vec<(usize, bool, u64, Option<u32>)> = pages
            .iter()
            .map(|(keys, more, requests, cap)| (keys.len(), *more, *requests, *cap))
            .collect();
        // The first short page is probed: rows after it reveal the cap of 120, the probed
        // rows are the next page (not fetched again), the rest is paged at 120 and the last
        // short page (60 < 100 rows) needs no probe.
        assert_eq!(
            summary,
            [
                (120, true, 1, Some(120)),
                (120, true, 1, None),
                (60, false, 1, None)
            ]
        );
        assert_eq!(
            pages.iter().flat_map(|p| p.0.clone()).collect::<Vec<_>>(),
            (1..=300).collect::<Vec<_>>()
        );
        assert_eq!(archive.requests(), 3, "requests ÷ minimum = 1.000");

        // A short page with no rows after it: the probe's empty answer is its second request.
        let archive = self::archive((1..=150).collect(), usize::MAX).await;
        let pages = scan(&archive, contacts().page_size(200).probe_cap(100))
            .await
            .unwrap();
        assert_eq!(pages.len(), 1);
        assert_eq!((pages[0].0.len(), pages[0].1, pages[0].2), (150, false, 2));
        assert_eq!(archive.requests(), 2);

        // Without `probe_cap`, or below its minimum, a short page ends the scan.
        let archive = self::archive((1..=300).collect(), 120).await;
        let pages = scan(&archive, contacts().page_size(200)).await.unwrap();
        assert_eq!(pages.len(), 1);
        let pages = scan(&archive, contacts().page_size(200).probe_cap(121))
            .await
            .unwrap();
        assert_eq!(pages.len(), 1);
        assert_eq!(archive.requests(), 2);
    }

    #[tokio::test]
    async fn answers_of_unexpected_shape_end_the_scan_with_an_error() {
        let archive = archive((1..=30).collect(), usize::MAX).await;
        let set = |body: &str| *archive.body.lock().unwrap() = Some(body.to_string());
        set(r#"{"odata.nextLink":null}"#);
        let mut keyset = contacts().page_size(10);
        match keyset.next_page(&archive.client).await {
            Err(Error::MissingValue { path, .. }) => {
                assert!(path.starts_with("/api/v1/Contact?"), "{path}")
            }
            other => panic!("expected MissingValue, got {other:?}"),
        }

        set(r#"{"value":[{"contactId":1},{"name":"No key AS"}]}"#);
        match contacts().next_page(&archive.client).await {
            Err(Error::MissingKey { key, row, rows, .. }) => {
                assert_eq!((key.as_str(), row, rows), ("contactId", 1, 2))
            }
            other => panic!("expected MissingKey, got {other:?}"),
        }
        // `PrimaryKey` stands in for the key column.
        set(r#"{"value":[{"PrimaryKey":"7"}]}"#);
        let page = contacts()
            .next_page(&archive.client)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(page.last, Some(7));
        let rows = keyset_page(
            &archive.client,
            &Source::List("Contact".into()),
            &Query::new(),
            "contactId",
            None,
            5,
        )
        .await
        .unwrap();
        assert_eq!(rows.len(), 1);
        set(r#"{"value":[{"name":"No key AS"}]}"#);
        let error = keyset_page(
            &archive.client,
            &Source::List("Contact".into()),
            &Query::new(),
            "contactId",
            Some(3),
            5,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                error,
                Error::MissingKey {
                    row: 0,
                    rows: 1,
                    ..
                }
            ),
            "{error:?}"
        );

        // A server that ignores `contactId gt 10` would make the scan run forever.
        set(r#"{"value":[{"contactId":1},{"contactId":2}]}"#);
        match contacts().after(Some(10)).next_page(&archive.client).await {
            Err(Error::KeysetStalled { after, last, .. }) => assert_eq!((after, last), (10, 2)),
            other => panic!("expected KeysetStalled, got {other:?}"),
        }
        // The probe's rows are checked like any page: a server that ignores the filter of
        // the probe too is caught when they come up as the next page.
        let rows: Vec<String> = (1..=25)
            .map(|k| format!(r#"{{"contactId":{k}}}"#))
            .collect();
        set(&format!(r#"{{"value":[{}]}}"#, rows.join(",")));
        let mut keyset = contacts().page_size(40).probe_cap(20);
        let first = keyset.next_page(&archive.client).await.unwrap().unwrap();
        assert_eq!(
            (first.rows.len(), first.more, first.cap),
            (25, true, Some(25))
        );
        assert_eq!(keyset.probed_rows().map(<[Row]>::len), Some(25));
        assert!(matches!(
            keyset.next_page(&archive.client).await,
            Err(Error::KeysetStalled {
                after: 25,
                last: 25,
                ..
            })
        ));
    }

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
