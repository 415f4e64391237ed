//! What a rule may read beyond its account's own data, as bits, taken
//! from its compiled script (`rules::changed` runs a rule again for an
//! account when something it may read changed). Every name the script
//! uses (variables, properties, calls, its own functions' bodies included)
//! is looked up in the rule API's reference: `account.*` names by section
//! (the ranking's values, the tier history), `portfolio.x` by name (the
//! floors, the counts, anything else of it). A script that calls functions
//! by a name made at run time (`Fn`, `call`, `curry`, `eval`) may read
//! everything; so may `portfolio` kept in a variable or passed along.
//! Reads the rule it is given; touches nothing.

use std::collections::HashMap;
use std::sync::OnceLock;

// The bits: what a rule may read, and what changed for an account or the book.

/// The account's own order lines and visits (every rule).
pub const OWN: u16 = 1;
pub const TIER: u16 = 1 << 1;
pub const PREV_TIER: u16 = 1 << 2;
pub const RANK: u16 = 1 << 3;
pub const SHARE: u16 = 1 << 4;
pub const SHARE_ABOVE: u16 = 1 << 5;
/// The tier history and the other rankings (`tier_ago`,
/// `share_above_ago`, `gross_profit_tier`, ...): every account's
/// order lines.
pub const HISTORY: u16 = 1 << 6;
/// Anything of the portfolio (its figures over windows, ...).
pub const PORTFOLIO: u16 = 1 << 7;
/// `portfolio.tier_floor` and `gross_profit_floor`.
pub const FLOORS: u16 = 1 << 8;
/// `portfolio.accounts`, `tier_count`, `accounts_with`.
pub const COUNTS: u16 = 1 << 9;
/// The kinds of data the book has (a rule's `book_needs`).
pub const KINDS: u16 = 1 << 10;
pub const ALL: u16 = u16::MAX;

/// `bits` in words, for the log: "the tier history, the portfolio".
pub fn describe(bits: u16) -> String {
    let names = [
        (OWN, "its own data"),
        (TIER, "the tier"),
        (PREV_TIER, "the tier 30 days ago"),
        (RANK, "the rank"),
        (SHARE, "the share"),
        (SHARE_ABOVE, "the share above"),
        (HISTORY, "the tier history"),
        (PORTFOLIO, "the portfolio"),
        (FLOORS, "the tier floors"),
        (COUNTS, "the book's counts"),
        (KINDS, "the kinds of data the book has"),
    ];
    let said: Vec<&str> = names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    said.join(", ")
}

/// Calls that reach functions by a name made at run time: a rule making
/// one may read anything.
const DYNAMIC: [&str; 4] = ["Fn", "call", "curry", "eval"];

/// The `account.*` names of the section "account: who it is" that read
/// only the master (which, changed, makes everything run) or the account's
/// own orders. Any other name of that section is taken as reading the
/// book's ranking, so a new one is safe before it is listed here.
const OWN_IDENTITY: [&str; 7] = [
    "id",
    "name",
    "region",
    "owner",
    "revenue_12m",
    "attr",
    "has_attr",
];

/// What the names of the rule API's reference read beyond the account's
/// own data: `account.*` names (own-data names are absent) and, apart,
/// `portfolio.*` names.
struct ApiNames {
    account: HashMap<String, u16>,
    portfolio: HashMap<String, u16>,
}

fn api_names() -> &'static ApiNames {
    static NAMES: OnceLock<ApiNames> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut e = rhai::Engine::new_raw();
        let mut names = ApiNames {
            account: HashMap::new(),
            portfolio: HashMap::new(),
        };
        let word = |rest: &str| -> String {
            rest.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        };
        for d in super::api::register(&mut e) {
            if let Some(rest) = d.usage.strip_prefix("portfolio.") {
                let name = word(rest);
                let class = match name.as_str() {
                    // The config's lines: a change to them is a config change.
                    "a_share" | "b_share" | "tiers_by" => 0,
                    // The total of the book ranked by gross profit: every
                    // account's order lines.
                    "gross_profit_12m" => HISTORY,
                    "tier_floor" | "gross_profit_floor" => FLOORS,
                    "accounts" | "tier_count" | "accounts_with" => COUNTS,
                    _ => PORTFOLIO,
                };
                *names.portfolio.entry(name).or_insert(0) |= class;
                continue;
            }
            let Some(rest) = d.usage.strip_prefix("account.") else {
                continue;
            };
            let name = word(rest);
            let class = match name.as_str() {
                "tier" => TIER,
                "prev_tier" => PREV_TIER,
                "rank" => RANK,
                "share" => SHARE,
                "share_above" => SHARE_ABOVE,
                n if d.section == "account: who it is" && !OWN_IDENTITY.contains(&n) => HISTORY,
                _ => continue,
            };
            *names.account.entry(name).or_insert(0) |= class;
        }
        names
    })
}

/// The name a chain's first link calls: `x` of `.x`, `.x(..)`, `.x.y`.
fn link_name(rhs: &rhai::Expr) -> Option<&str> {
    use rhai::Expr;
    match rhs {
        Expr::Property(p, _) => Some(p.2.as_str()),
        Expr::MethodCall(f, _) => Some(f.name.as_str()),
        Expr::Dot(b, ..) => link_name(&b.lhs),
        _ => None,
    }
}

/// What `rule` may read, as [`reads`] bits: every name its compiled
/// script uses (variables, properties, calls, its own functions' bodies
/// included) looked up in the rule API's reference. `portfolio` read
/// other than as `portfolio.name` (kept in a variable, passed to a
/// function) may read anything of it; so may an unknown name on it.
pub fn rule_reads(rule: &super::set::Rule) -> u16 {
    use rhai::{ASTNode, Expr, Stmt};
    let mut bits = OWN;
    // A rule for some tiers only reads the tier to know whether it runs;
    // one that needs the book to have some data reads the book's kinds.
    if rule.mask & 7 != 7 {
        bits |= TIER;
    }
    if rule.book_needs != 0 {
        bits |= KINDS;
    }
    let names = api_names();
    let mut dynamic = false;
    rule.ast.walk(&mut |path: &[ASTNode]| {
        let Some(node) = path.last() else {
            return true;
        };
        let name = match node {
            ASTNode::Expr(Expr::Variable(x, ..)) => x.1.as_str(),
            ASTNode::Expr(Expr::Property(p, _)) => p.2.as_str(),
            ASTNode::Expr(Expr::FnCall(f, _) | Expr::MethodCall(f, _))
            | ASTNode::Stmt(Stmt::FnCall(f, _)) => f.name.as_str(),
            _ => return true,
        };
        if DYNAMIC.contains(&name) {
            dynamic = true;
            return false;
        }
        if let Some(c) = names.account.get(name) {
            bits |= c;
        }
        if name != "portfolio" {
            return true;
        }
        // `portfolio.x`: the parent is the dot with this variable on its left.
        let on = match path.len().checked_sub(2).map(|i| &path[i]) {
            Some(ASTNode::Expr(Expr::Dot(b, ..))) => match node {
                ASTNode::Expr(e) if std::ptr::eq(&b.lhs, *e) => link_name(&b.rhs),
                _ => None,
            },
            _ => None,
        };
        bits |= on
            .and_then(|n| names.portfolio.get(n).copied())
            .unwrap_or(PORTFOLIO);
        true
    });
    if dynamic { ALL } else { bits }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;

    fn reads_of(src: &str) -> u16 {
        let rs = RuleSet::from_sources(&[("r", src)]).unwrap();
        rule_reads(&rs.rules[0])
    }

    /// What each shipped rule may read beyond its account's own data.
    #[test]
    fn the_shipped_rules_read_what_they_name() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let (rs, errors) = RuleSet::load_dir(&dir).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        let got: Vec<(String, u16)> = rs
            .rules
            .iter()
            .map(|r| (r.name.to_string(), rule_reads(r)))
            .collect();
        let want = |name: &str| -> u16 {
            match name {
                "credit_limit" | "overdue_receivables" => OWN,
                "declining_orders" | "margin_slip" | "order_gap" | "stock_cover" => OWN | TIER,
                "lapsed_visits" => OWN | TIER | KINDS,
                // tier_floor only: the floors, not every figure of the book.
                "rising_accounts" => OWN | TIER | FLOORS,
                "thin_margin_a" => OWN | SHARE | HISTORY | PORTFOLIO,
                // portfolio.a_share is the config's line: no book read.
                "tier_movement" => OWN | TIER | SHARE | SHARE_ABOVE | HISTORY,
                other => panic!("a shipped rule this test does not know: {other}"),
            }
        };
        for (name, bits) in &got {
            assert_eq!(*bits, want(name), "{name}: {bits:#x}");
        }
        assert_eq!(got.len(), 10);
    }

    #[test]
    fn names_reached_other_ways_count_too() {
        // In a function of the script, called as a function, or as a method.
        assert_eq!(
            reads_of("fn f(a) { a.rank } let x = f(account);"),
            OWN | RANK
        );
        assert_eq!(reads_of("let t = tier_ago(account, 30);"), OWN | HISTORY);
        assert_eq!(
            reads_of("let p = account.prev_tier; let q = account.revenue(30);"),
            OWN | PREV_TIER
        );
        // The portfolio kept in a variable may be read whole.
        assert_eq!(
            reads_of("let p = portfolio; let x = p.tier_floor(\"A\");"),
            OWN | PORTFOLIO
        );
        assert_eq!(
            reads_of("let x = portfolio.tier_count(\"A\");"),
            OWN | COUNTS
        );
        assert_eq!(reads_of("let x = portfolio.revenue(30);"), OWN | PORTFOLIO);
        assert_eq!(reads_of("let x = portfolio.a_share;"), OWN);
        // A name made at run time: anything.
        assert_eq!(
            reads_of("let f = Fn(\"to_string\"); let x = f.call(1);"),
            ALL
        );
        // The tiers a rule runs for are a read of the tier.
        assert_eq!(
            reads_of("const SETTINGS = #{ tiers: [\"A\"] }; let x = account.id;"),
            OWN | TIER
        );
        // A text naming a value reads nothing.
        assert_eq!(reads_of("let x = \"share rank tier portfolio\";"), OWN);
    }
}
