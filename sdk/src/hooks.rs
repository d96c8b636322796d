//! `ClientHooks` for the generated `Client`: the one seam through which the hand-written
//! runtime enters every generated operation (see [`crate::runtime`]).

use progenitor_client::{ClientHooks, ClientInfo, OperationInfo};

use crate::Client;
use crate::runtime::Runtime;

impl ClientHooks<Runtime> for Client {
    async fn exec(
        &self,
        request: reqwest::Request,
        info: &OperationInfo,
    ) -> reqwest::Result<reqwest::Response> {
        self.inner()
            .execute(self.client(), self.baseurl(), request, info.operation_id)
            .await
    }
}
