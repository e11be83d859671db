//! Refresh-token rotation over `auth.refresh_session`. Filled in by the
//! service work; empty until then.
