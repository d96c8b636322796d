//! The tenant's location and state: which host label serves it (`app1`, `app2`, … after each
//! move) and its lifecycle state as the State API reports it.

use serde::{Deserialize, Serialize};

/// Tenant states of the State API (FACTS §1.2), serialised by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantState {
    /// 0.
    Unknown,
    /// 1.
    Provisioning,
    /// 2: usable.
    Running,
    /// 3.
    Deleted,
    /// 4.
    Suspended,
    /// 5: usable.
    OnlineMaintenance,
    /// 6.
    OfflineMaintenance,
    /// 8.
    ProvisioningFailed,
    /// 10.
    Deleting,
    /// 11.
    DeleteFailed,
    /// 12.
    MigrationPending,
}

impl TenantState {
    /// Whether the API is usable (`IsRunning`).
    pub fn is_running(self) -> bool {
        matches!(self, TenantState::Running | TenantState::OnlineMaintenance)
    }
}

/// Where the tenant lives and in which state.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Host label prefix.
    pub prefix: String,
    /// Current host number (1 for `app1`).
    pub host_index: u32,
    /// Lifecycle state.
    pub state: TenantState,
}

impl Tenant {
    /// A running tenant on `{prefix}1`.
    pub fn new(prefix: &str) -> Self {
        Tenant {
            prefix: prefix.to_string(),
            host_index: 1,
            state: TenantState::Running,
        }
    }

    /// The current host label (`app1`).
    pub fn host_label(&self) -> String {
        format!("{}{}", self.prefix, self.host_index)
    }

    /// Moves the tenant to the next host.
    pub fn move_host(&mut self) {
        self.host_index += 1;
    }
}

/// What `POST /__admin/tenant` accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantUpdate {
    /// `true` moves the tenant to the next host label.
    #[serde(default)]
    pub moved: bool,
    /// A new state.
    #[serde(default)]
    pub state: Option<TenantState>,
}

/// What `POST /__admin/tenant` and [`crate::Emulator::tenant`] report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// Current host label.
    pub host_label: String,
    /// Current tenant URL (`{base}/{host_label}/{ctx}`).
    pub tenant_url: String,
    /// State.
    pub state: TenantState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_and_states() {
        let mut t = Tenant::new("app");
        assert_eq!(t.host_label(), "app1");
        t.move_host();
        assert_eq!(t.host_label(), "app2");
        assert!(TenantState::OnlineMaintenance.is_running());
        assert!(!TenantState::Suspended.is_running());
        let u: TenantUpdate =
            serde_json::from_str(r#"{"moved":true,"state":"OfflineMaintenance"}"#).unwrap();
        assert_eq!(u.state, Some(TenantState::OfflineMaintenance));
    }
}
