//! The rows of the data tables as the rest of kamwatch sees them: what
//! ingest writes and what the reads return. Plain values; no SQL.

use chrono::NaiveDate;

use crate::model::Tier;

#[derive(Debug, Clone, PartialEq)]
pub struct AccountRow {
    pub id: String,
    pub name: String,
    pub region: Option<String>,
    pub owner: Option<String>,
    pub owner_email: Option<String>,
    pub manager_email: Option<String>,
    /// The manager's name, when the master has it.
    pub manager: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub order_id: String,
    pub line: String,
    pub account_id: String,
    pub date: NaiveDate,
    pub sku: Option<String>,
    pub qty: Option<f64>,
    pub revenue: f64,
    pub cost: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VisitRow {
    pub account_id: String,
    pub date: NaiveDate,
    pub visitor: String,
    pub role: Option<String>,
}

/// The customer master's fields beyond [`AccountRow`], and the columns of
/// any export beyond its canonical fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra {
    pub credit_limit: Option<f64>,
    /// The master's tier, overriding the computed one.
    pub tier_override: Option<Tier>,
    /// A JSON object of the other columns, `None` when there are none.
    pub attrs: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceivableRow {
    pub account_id: String,
    pub invoice: String,
    pub amount: f64,
    pub due_date: NaiveDate,
    pub invoice_date: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InventoryRow {
    pub sku: String,
    /// Empty for stock not held for one account.
    pub account_id: String,
    pub on_hand: f64,
}

/// An account as the rest of the pipeline sees it.
#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub row: AccountRow,
    pub active: bool,
}

/// One account's orders on one day, summed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderDay {
    pub date: NaiveDate,
    pub revenue: f64,
    pub cost: f64,
    pub qty: f64,
    pub orders: u32,
}
