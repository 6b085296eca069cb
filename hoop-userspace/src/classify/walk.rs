//! Complete walk over a parse tree, driven by the tree's `serde::Serialize`
//! impls: every node of every type is visited, so new or rare node types cannot
//! hide a table reference. The walk records relations (with CTE scoping),
//! function calls, nested data-modifying statements, WHERE presence and row locks.
//!
//! It never reads a constant's value: the cache's template tier
//! (`template.rs`) relies on literals not changing the classification. It
//! records where constants are (`consts`) so that tier can check its premise.
use std::fmt;

use serde::ser::{self, Serialize};

use super::StatementKind;

/// A relation reference found in the tree.
#[derive(Debug, Clone)]
pub(super) struct RelRef {
    pub schema: Option<String>,
    pub name: String,
    /// Nearest enclosing (struct, field) that is not a `Node`/`List` wrapper.
    pub parent: (&'static str, &'static str),
    /// Refers to a CTE in scope rather than a table (resolved after the walk).
    pub is_cte: bool,
    chain: Vec<(usize, Option<usize>)>,
}

/// Everything the walk found.
#[derive(Debug, Default)]
pub(super) struct Walk {
    pub relations: Vec<RelRef>,
    /// Called functions as (schema, name).
    pub functions: Vec<(Option<String>, String)>,
    /// INSERT/UPDATE/DELETE/MERGE statements anywhere in the tree, in order.
    pub dml: Vec<StatementKind>,
    /// AND over every UPDATE/DELETE seen: does it have a WHERE clause?
    pub all_have_where: Option<bool>,
    pub row_locks: bool,
    /// Byte offsets of every `A_Const` (literal constant) in the tree.
    pub consts: Vec<i32>,
    /// Type name of the outermost node, e.g. `CreateEnumStmt`.
    pub root: &'static str,
    // Walk state below.
    stack: Vec<Frame>,
    scopes: Vec<Scope>,
    /// Scope chain: (scope index, `Some(k)` while inside that scope's CTE k).
    chain: Vec<(usize, Option<usize>)>,
    pending_rel: Option<PendingRel>,
    funcs: Vec<Vec<String>>,
}

#[derive(Debug)]
struct Frame {
    name: &'static str,
    field: &'static str,
}

#[derive(Debug, Default)]
struct Scope {
    ctes: Vec<String>,
    recursive: bool,
}

#[derive(Debug)]
struct PendingRel {
    schema: String,
    name: String,
    parent: (&'static str, &'static str),
    chain: Vec<(usize, Option<usize>)>,
}

/// Walks `node` (any serializable parse-tree value).
pub(super) fn walk<T: Serialize + ?Sized>(node: &T) -> Walk {
    let mut w = Walk::default();
    // Serializing into the walker cannot fail: it never returns an error.
    let _ = node.serialize(&mut w);
    // CTE names are only all known after the walk: a statement's WITH clause is
    // serialized after its FROM clause.
    let resolved: Vec<bool> = w
        .relations
        .iter()
        .map(|r| r.schema.is_none() && w.cte_visible(&r.name, &r.chain))
        .collect();
    for (r, is_cte) in w.relations.iter_mut().zip(resolved) {
        r.is_cte = is_cte;
    }
    w
}

impl Walk {
    fn top(&self) -> Option<(&'static str, &'static str)> {
        self.stack.last().map(|f| (f.name, f.field))
    }

    /// The nearest frame that is not a generic wrapper node.
    fn parent(&self, skip: &[&str]) -> (&'static str, &'static str) {
        self.stack
            .iter()
            .rev()
            .find(|f| !matches!(f.name, "Node" | "List") && !skip.contains(&f.name))
            .map_or(("", ""), |f| (f.name, f.field))
    }

    fn enter(&mut self, name: &'static str) {
        if self.stack.is_empty() && self.root.is_empty() {
            self.root = name;
        }
        match name {
            "SelectStmt" | "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                self.scopes.push(Scope::default());
                self.chain.push((self.scopes.len() - 1, None));
                match name {
                    "InsertStmt" => self.dml.push(StatementKind::Insert),
                    "UpdateStmt" => self.dml.push(StatementKind::Update),
                    "DeleteStmt" => self.dml.push(StatementKind::Delete),
                    "MergeStmt" => self.dml.push(StatementKind::Merge),
                    _ => {}
                }
            }
            "CommonTableExpr" => {
                // A CTE belongs to the statement whose WITH clause holds it, which
                // is the innermost scope at this point.
                if let Some(top) = self.chain.last_mut() {
                    let scope = &mut self.scopes[top.0];
                    top.1 = Some(scope.ctes.len());
                    scope.ctes.push(String::new());
                }
            }
            "RangeVar" => {
                self.pending_rel = Some(PendingRel {
                    schema: String::new(),
                    name: String::new(),
                    parent: self.parent(&[]),
                    chain: self.chain.clone(),
                });
            }
            "LockingClause" => self.row_locks = true,
            "FuncCall" => self.funcs.push(Vec::new()),
            _ => {}
        }
        self.stack.push(Frame { name, field: "" });
    }

    fn exit(&mut self) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        match frame.name {
            "SelectStmt" | "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                self.chain.pop();
            }
            "CommonTableExpr" => {
                if let Some(top) = self.chain.last_mut() {
                    top.1 = None;
                }
            }
            "RangeVar" => {
                if let Some(p) = self.pending_rel.take() {
                    let schema = (!p.schema.is_empty()).then_some(p.schema);
                    self.relations.push(RelRef {
                        schema,
                        name: p.name,
                        parent: p.parent,
                        is_cte: false,
                        chain: p.chain,
                    });
                }
            }
            "FuncCall" => {
                if let Some(mut parts) = self.funcs.pop()
                    && let Some(name) = parts.pop()
                {
                    self.functions.push((parts.pop(), name));
                }
            }
            _ => {}
        }
    }

    /// Whether `name` names a CTE visible from the scope chain, with
    /// PostgreSQL's rules: a statement sees all of its CTEs; inside CTE k a
    /// non-recursive WITH exposes only CTEs 0..k (not itself), a recursive one all.
    fn cte_visible(&self, name: &str, chain: &[(usize, Option<usize>)]) -> bool {
        chain.iter().rev().any(|&(scope, pos)| {
            let s = &self.scopes[scope];
            let visible = match pos {
                None => &s.ctes[..],
                Some(_) if s.recursive => &s.ctes[..],
                Some(k) => &s.ctes[..k.min(s.ctes.len())],
            };
            visible.iter().any(|c| c == name)
        })
    }

    fn string(&mut self, v: &str) {
        match self.top() {
            Some(("RangeVar", "schemaname")) => {
                if let Some(p) = &mut self.pending_rel {
                    p.schema = v.to_owned();
                }
            }
            Some(("RangeVar", "relname")) => {
                if let Some(p) = &mut self.pending_rel {
                    p.name = v.to_owned();
                }
            }
            Some(("CommonTableExpr", "ctename")) => {
                if let Some(&(scope, Some(k))) = self.chain.last()
                    && let Some(slot) = self.scopes[scope].ctes.get_mut(k)
                {
                    *slot = v.to_owned();
                }
            }
            Some(("String", "sval")) if self.parent(&["String"]) == ("FuncCall", "funcname") => {
                if let Some(parts) = self.funcs.last_mut() {
                    parts.push(v.to_owned());
                }
            }
            _ => {}
        }
    }

    fn option(&mut self, present: bool) {
        if let Some(("UpdateStmt" | "DeleteStmt", "where_clause")) = self.top() {
            self.all_have_where = Some(self.all_have_where.unwrap_or(true) && present);
        }
    }
}

/// The walker never fails; serde still needs an error type.
#[derive(Debug)]
pub(super) struct Never;

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("walk error")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Never
    }
}

macro_rules! ignore {
    ($($name:ident: $ty:ty),* $(,)?) => {
        $(fn $name(self, _v: $ty) -> Result<(), Never> { Ok(()) })*
    };
}

impl ser::Serializer for &mut Walk {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    ignore!(
        serialize_i8: i8, serialize_i16: i16, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_f32: f32, serialize_f64: f64, serialize_char: char, serialize_bytes: &[u8],
    );

    fn serialize_i32(self, v: i32) -> Result<(), Never> {
        if self.top() == Some(("AConst", "location")) {
            self.consts.push(v);
        }
        Ok(())
    }

    fn serialize_bool(self, v: bool) -> Result<(), Never> {
        if v && self.top() == Some(("WithClause", "recursive"))
            && let Some(&(scope, _)) = self.chain.last()
        {
            self.scopes[scope].recursive = true;
        }
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Never> {
        self.string(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Never> {
        self.option(false);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Never> {
        self.option(true);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Never> {
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Never> {
        Ok(())
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Never> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        value.serialize(self)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self, Never> {
        Ok(self)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self, Never> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, _len: usize) -> Result<Self, Never> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Never> {
        Ok(self)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self, Never> {
        Ok(self)
    }

    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Self, Never> {
        self.enter(name);
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, Never> {
        self.enter(variant);
        Ok(self)
    }
}

impl ser::SerializeStruct for &mut Walk {
    type Ok = ();
    type Error = Never;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        if let Some(top) = self.stack.last_mut() {
            top.field = key;
        }
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), Never> {
        self.exit();
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Walk {
    type Ok = ();
    type Error = Never;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }

    fn end(self) -> Result<(), Never> {
        self.exit();
        Ok(())
    }
}

macro_rules! sequence {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl ser::$trait for &mut Walk {
            type Ok = ();
            type Error = Never;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
                value.serialize(&mut **self)
            }

            fn end(self) -> Result<(), Never> {
                Ok(())
            }
        })*
    };
}

sequence!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for &mut Walk {
    type Ok = ();
    type Error = Never;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Never> {
        key.serialize(&mut **self)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}
