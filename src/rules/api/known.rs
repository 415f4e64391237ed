//! What `check` knows a rule may call: every function the engine has
//! registered (its packages and the rule API) with the numbers of
//! arguments it takes, and the calls in a rule no function answers, with
//! the nearest known name. Reads the engine's metadata and a rule's AST.

use rhai::Engine;

/// The functions a rule may call: name -> the numbers of arguments it
/// takes, counting a method's object as the first. Built from what the
/// engine has registered (its packages and this API), so `check` and the
/// engine cannot disagree.
pub struct Known {
    arities: std::collections::HashMap<String, std::collections::BTreeSet<usize>>,
}

/// Rhai's own functions, handled by the engine rather than registered.
const KEYWORD_FNS: &[(&str, &[usize])] = &[
    ("print", &[0, 1]),
    ("debug", &[0, 1]),
    ("type_of", &[1]),
    ("Fn", &[1]),
    ("call", &[1, 2, 3, 4, 5, 6, 7, 8]),
    ("curry", &[2, 3, 4, 5, 6, 7, 8]),
    ("is_def_var", &[1]),
    ("is_def_fn", &[2]),
    ("is_shared", &[1]),
];

impl Known {
    pub fn of(e: &Engine) -> Known {
        let mut arities: std::collections::HashMap<String, std::collections::BTreeSet<usize>> =
            std::collections::HashMap::new();
        let json = e.gen_fn_metadata_to_json(true).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        for f in v["functions"].as_array().into_iter().flatten() {
            let (Some(name), Some(n)) = (f["name"].as_str(), f["numParams"].as_u64()) else {
                continue;
            };
            arities
                .entry(name.to_string())
                .or_default()
                .insert(n as usize);
        }
        for (name, ns) in KEYWORD_FNS {
            arities
                .entry(name.to_string())
                .or_default()
                .extend(ns.iter().copied());
        }
        Known { arities }
    }

    /// The calls in `ast` (its statements and its own functions) that no
    /// registered or script-defined function answers: (name, arguments,
    /// method call?, position, the nearest known name).
    pub fn unknown_calls(&self, ast: &rhai::AST) -> Vec<UnknownCall> {
        use rhai::{ASTNode, Expr, Stmt};
        let mut own: std::collections::HashMap<String, std::collections::BTreeSet<usize>> =
            std::collections::HashMap::new();
        for f in ast.iter_functions() {
            own.entry(f.name.to_string())
                .or_default()
                .insert(f.params.len());
        }
        let mut out = Vec::new();
        ast.walk(&mut |path: &[ASTNode]| {
            if let Some(u) = self.pointer_to_nothing(path, &own) {
                out.push(u);
                return true;
            }
            let (x, pos, method) = match path.last() {
                Some(ASTNode::Expr(Expr::FnCall(x, pos))) => (x, *pos, false),
                Some(ASTNode::Expr(Expr::MethodCall(x, pos))) => (x, *pos, true),
                // A call standing as a statement of its own (`alrt(...);`).
                Some(ASTNode::Stmt(Stmt::FnCall(x, pos))) => (x, *pos, false),
                _ => return true,
            };
            let name = x.name.as_str();
            // Operators (`+`, `==`, `in`) are calls too; only names count.
            let is_name = name
                .chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_');
            if x.op_token.is_some() || !is_name {
                return true;
            }
            let args = x.args.len();
            // A script's own function answers `f(a)` and `a.f()` (as `this`).
            let script_ok = own.get(name).is_some_and(|n| n.contains(&args));
            let native_ok = self
                .arities
                .get(name)
                .is_some_and(|n| n.contains(&(args + usize::from(method))));
            if !script_ok && !native_ok {
                out.push(UnknownCall {
                    name: name.to_string(),
                    args,
                    method,
                    pointer: false,
                    pos,
                    suggestion: self.nearest(name, &own),
                    other_arities: self
                        .arities
                        .get(name)
                        .or_else(|| own.get(name))
                        .map(|n| {
                            n.iter()
                                .map(|a| a.saturating_sub(usize::from(method)))
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            true
        });
        out
    }

    /// `Fn("name")` with a name no function has: the pointer would fail
    /// only when called, as a figure in the mail (`alert(#{ figures:
    /// Fn(..) })`) or an error for every account, and `check` says so now.
    fn pointer_to_nothing(
        &self,
        path: &[rhai::ASTNode],
        own: &std::collections::HashMap<String, std::collections::BTreeSet<usize>>,
    ) -> Option<UnknownCall> {
        use rhai::{ASTNode, Expr, Stmt};
        // As written, or folded by the optimizer into a constant pointer
        // (curried with constants, too).
        let (name, pos) = match path.last()? {
            ASTNode::Expr(Expr::FnCall(x, pos)) | ASTNode::Stmt(Stmt::FnCall(x, pos))
                if x.name.as_str() == "Fn" =>
            {
                match x.args.as_ref() {
                    [Expr::StringConstant(name, _)] => (name.to_string(), *pos),
                    _ => return None,
                }
            }
            ASTNode::Expr(Expr::DynamicConstant(v, pos)) if v.is_fnptr() => {
                (v.clone().cast::<rhai::FnPtr>().fn_name().to_string(), *pos)
            }
            _ => return None,
        };
        if own.contains_key(&name) || self.arities.contains_key(&name) {
            return None;
        }
        Some(UnknownCall {
            suggestion: self.nearest(&name, own),
            name,
            args: 0,
            method: false,
            pointer: true,
            pos,
            other_arities: Vec::new(),
        })
    }

    /// The known name closest to `name` (edit distance at most a third of
    /// its length, at least 2), if any.
    fn nearest(
        &self,
        name: &str,
        own: &std::collections::HashMap<String, std::collections::BTreeSet<usize>>,
    ) -> Option<String> {
        let limit = (name.chars().count() / 3).max(2);
        self.arities
            .keys()
            .chain(own.keys())
            .filter(|k| k.as_str() != name && !k.contains('$'))
            .map(|k| (edit_distance(name, k), k))
            .filter(|(d, _)| *d <= limit)
            .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)))
            .map(|(_, k)| k.clone())
    }
}

/// A call `check` found no function for.
#[derive(Debug, Clone)]
pub struct UnknownCall {
    pub name: String,
    pub args: usize,
    pub method: bool,
    /// `Fn("name")`, a pointer to a function that does not exist.
    pub pointer: bool,
    pub pos: rhai::Position,
    pub suggestion: Option<String>,
    /// The argument counts the name takes, when the name is known.
    pub other_arities: Vec<usize>,
}

impl std::fmt::Display for UnknownCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pointer {
            write!(f, "`Fn(\"{}\")` names no function", self.name)?;
            return match &self.suggestion {
                Some(s) => write!(f, "; did you mean `{s}`?"),
                None => write!(
                    f,
                    "; define `fn {}(..)` in this rule or see `kamwatch rules api`",
                    self.name
                ),
            };
        }
        let plural = if self.args == 1 { "" } else { "s" };
        let what = if self.method { "method" } else { "function" };
        if !self.other_arities.is_empty() {
            let takes: Vec<String> = self.other_arities.iter().map(|n| n.to_string()).collect();
            return write!(
                f,
                "{what} `{}` does not take {} argument{plural}; it takes {}. See `kamwatch rules api`",
                self.name,
                self.args,
                takes.join(" or ")
            );
        }
        write!(
            f,
            "unknown {what} `{}` ({} argument{plural})",
            self.name, self.args
        )?;
        match &self.suggestion {
            Some(s) => write!(f, "; did you mean `{s}`?"),
            None => write!(f, "; `kamwatch rules api` lists the functions"),
        }
    }
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
