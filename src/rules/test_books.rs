//! Snapshots for the rules stage's unit tests.

use std::sync::Arc;

use crate::metrics::{AccountMetrics, Snapshot};

/// A snapshot of `n` tier-A accounts, the one at `panic_at` named so
/// that its evaluation panics.
pub(super) fn snapshot_of(n: usize, panic_at: usize) -> Snapshot {
    let mut snap = crate::metrics::tests_support::snapshot_one();
    snap.accounts = (0..n)
        .map(|i| {
            let id = if i == panic_at {
                format!("PANIC{i}")
            } else {
                format!("KH{i}")
            };
            Arc::new(AccountMetrics {
                tier: crate::model::Tier::A,
                prev_tier: crate::model::Tier::A,
                ..AccountMetrics::empty(&id, "测试")
            })
        })
        .collect();
    snap
}

/// A snapshot of `n` tier-A accounts KH1..KHn.
pub(super) fn book_of(n: usize) -> Snapshot {
    let mut snap = crate::metrics::tests_support::snapshot_one();
    for i in 2..=n {
        let id = format!("KH{i}");
        snap.accounts.push(Arc::new(AccountMetrics {
            tier: crate::model::Tier::A,
            prev_tier: crate::model::Tier::A,
            ..AccountMetrics::empty(&id, "测试")
        }));
    }
    snap
}
