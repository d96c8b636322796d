//! `ClientHooks` for the generated `Client`: the seam through which the hand-written runtime
//! enters every generated operation.

use progenitor_client::{ClientHooks, ClientInfo, OperationInfo};

use crate::Client;
use crate::runtime::Runtime;

impl ClientHooks<Runtime> for Client {
    async fn exec(
        &self,
        mut request: reqwest::Request,
        _info: &OperationInfo,
    ) -> reqwest::Result<reqwest::Response> {
        let headers = request.headers_mut();
        // progenitor stamps `api-version: v1-REST` on every request; SuperOffice has no use for it.
        headers.remove("api-version");
        for (name, value) in self.inner().default_headers() {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        self.client().execute(request).await
    }
}
