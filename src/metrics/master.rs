//! The customer master as the metrics hold it: each account's texts (id,
//! name, region, owner, e-mails, manager) once, in one shared record
//! (`Who`) that the timeline's accounts point at instead of copying, and
//! what repeats from account to account (an owner's name and e-mail, a
//! region, a manager) held once for all of them. Reads the store's master;
//! writes nothing.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Result;
use rusqlite::Connection;

use super::load;
use crate::store;

/// One account's texts from the master.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Who {
    pub(super) id: Arc<str>,
    pub(super) name: Arc<str>,
    /// Empty when the master has none.
    pub(super) region: Arc<str>,
    /// Empty when the master has none.
    pub(super) owner: Arc<str>,
    pub(super) owner_email: Option<Arc<str>>,
    pub(super) manager_email: Option<Arc<str>>,
    /// Empty when the master has none.
    pub(super) manager: Arc<str>,
}

/// One account of the master.
#[derive(Debug)]
pub(super) struct Listed {
    pub(super) who: Arc<Who>,
    pub(super) active: bool,
    /// Its attributes, credit limit and tier column, as read (None: the
    /// row was not there when they were).
    pub(super) extra: Option<load::Extra>,
}

/// Texts held once however many accounts name them.
#[derive(Default)]
struct Interned(HashSet<Arc<str>>);

impl Interned {
    fn text(&mut self, s: String) -> Arc<str> {
        if let Some(t) = self.0.get(s.as_str()) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(s);
        self.0.insert(t.clone());
        t
    }
}

/// Every account of the master, in id order, with its extra columns.
pub(super) fn load(conn: &Connection) -> Result<Vec<Listed>> {
    let mut shared = Interned::default();
    let mut extras = load::account_extras(conn)?;
    let mut out = Vec::new();
    for rec in store::load_accounts(conn)? {
        let r = rec.row;
        let extra = extras.remove(&r.id);
        let who = Who {
            // An id is the account's own; a name may repeat (branches
            // of one customer, a book exported without names).
            id: Arc::from(r.id),
            name: shared.text(r.name),
            region: shared.text(r.region.unwrap_or_default()),
            owner: shared.text(r.owner.unwrap_or_default()),
            owner_email: r.owner_email.map(|e| shared.text(e)),
            manager_email: r.manager_email.map(|e| shared.text(e)),
            manager: shared.text(r.manager.unwrap_or_default()),
        };
        out.push(Listed {
            who: Arc::new(who),
            active: rec.active,
            extra,
        });
    }
    out.shrink_to_fit();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What repeats is one text for every account naming it; what the
    /// master leaves empty reads as before (empty region and owner, no
    /// e-mail, no manager).
    #[test]
    fn repeated_texts_are_held_once_and_missing_ones_read_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(&dir.path().join("k.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO accounts (id, name, region, owner, owner_email, manager_email, active, manager, updated_at) VALUES
               ('A2', '甲', '华东', '王', 'w@x.cn', 'm@x.cn', 1, '李', 'x'),
               ('A1', '甲', '华东', '王', 'w@x.cn', NULL, 0, NULL, 'x'),
               ('B', '乙', NULL, NULL, NULL, NULL, 1, NULL, 'x');
             UPDATE accounts SET attrs = '{\"行业\":\"零售\"}', credit_limit = 5 WHERE id = 'B';",
        )
        .unwrap();
        let m = load(&conn).unwrap();
        let ids: Vec<&str> = m.iter().map(|l| &*l.who.id).collect();
        assert_eq!(ids, ["A1", "A2", "B"]);
        let (a1, a2, b) = (&m[0].who, &m[1].who, &m[2].who);
        assert!(Arc::ptr_eq(&a1.region, &a2.region));
        assert!(Arc::ptr_eq(&a1.owner, &a2.owner));
        assert!(Arc::ptr_eq(
            a1.owner_email.as_ref().unwrap(),
            a2.owner_email.as_ref().unwrap()
        ));
        assert_eq!((&*a2.name, &*a2.region, &*a2.owner), ("甲", "华东", "王"));
        assert_eq!(&*a2.manager, "李");
        assert_eq!(a2.manager_email.as_deref(), Some("m@x.cn"));
        assert_eq!((m[0].active, m[1].active, m[2].active), (false, true, true));
        assert_eq!((&*b.region, &*b.owner), ("", ""));
        assert_eq!((b.owner_email.as_deref(), &*b.manager), (None, ""));
        assert!(Arc::ptr_eq(&b.manager, &b.region));
        // The extra columns come with each account; accounts without
        // attributes share one empty set.
        let extra = |i: usize| m[i].extra.as_ref().unwrap();
        assert_eq!(extra(2).attrs["行业"], "零售");
        assert_eq!(extra(2).credit_limit, Some(5.0));
        assert!(extra(0).attrs.is_empty() && extra(0).credit_limit.is_none());
        assert!(Arc::ptr_eq(&extra(0).attrs, &extra(1).attrs));
    }

    /// Adversarial masters: every account with the same name, ids and
    /// names of 100,000 characters, an id stored as a number: the same
    /// name is one text, long texts come back whole, a numeric id reads
    /// as its digits (what the orders' account ids are compared with).
    #[test]
    fn same_names_long_texts_and_numeric_ids() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(&dir.path().join("k.db")).unwrap();
        let long = "长".repeat(100_000);
        let mut st = conn
            .prepare("INSERT INTO accounts (id, name, owner, updated_at) VALUES (?1, ?2, ?3, 'x')")
            .unwrap();
        for i in 0..1000 {
            st.execute(rusqlite::params![format!("K{i:04}"), "同名客户", "王"])
                .unwrap();
        }
        st.execute(rusqlite::params![format!("{long}id"), long, long])
            .unwrap();
        st.execute(rusqlite::params![123_i64, "数字", "王"])
            .unwrap();
        drop(st);
        let m = load(&conn).unwrap();
        assert_eq!(m.len(), 1002);
        let first = &m.iter().find(|l| &*l.who.id == "K0000").unwrap().who;
        for l in m.iter().filter(|l| l.who.id.starts_with('K')) {
            assert!(Arc::ptr_eq(&l.who.name, &first.name), "{:?}", l.who.id);
            assert!(Arc::ptr_eq(&l.who.owner, &first.owner));
        }
        let big = &m.iter().find(|l| l.who.id.len() > 1000).unwrap().who;
        assert_eq!(*big.id, format!("{long}id"));
        assert_eq!((&*big.name, &*big.owner), (long.as_str(), long.as_str()));
        assert!(m.iter().any(|l| &*l.who.id == "123"));
    }
}
