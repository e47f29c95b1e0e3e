//! SQL the SQLite and PostgreSQL backends build alike, written once over a
//! [`Dialect`]: what differs between the two databases (how a parameter is
//! written, how a tag list is searched) is the dialect's, the statement's
//! shape and the order of its parameters are shared.
//!
//! This module builds text and typed parameters only; each backend binds
//! the [`Param`]s with its own driver, in order. With [`rows`](crate::rows)
//! (reading rows back) and [`plan`](crate::plan) (what a turn writes, in
//! which order), it is what the SQL backends share without this crate
//! depending on a database library.
//!
//! ```
//! use stent_journal::sql::{Dialect, Param, ParamKind, execution_listing};
//! use stent_journal::store::ExecutionFilter;
//!
//! struct Numbered;
//! impl Dialect for Numbered {
//!     fn placeholder(n: usize, _kind: ParamKind) -> String {
//!         format!("${n}")
//!     }
//!     fn has_tag(tags: &str, param: &str) -> String {
//!         format!("{param} = ANY({tags})")
//!     }
//! }
//!
//! let filter = ExecutionFilter::default().queue("mail".to_string()).limit(10);
//! let listing = execution_listing::<Numbered>("SELECT * FROM executions", &filter).unwrap();
//! assert_eq!(
//!     listing.statement,
//!     "SELECT * FROM executions WHERE queue = $1 ORDER BY created_at DESC, id ASC LIMIT $2 OFFSET $3"
//! );
//! assert_eq!(listing.params, [Param::Text("mail".into()), Param::Int(10), Param::Int(0)]);
//! ```

use crate::store::{ExecutionFilter, StoreError};

/// What differs in the SQL of one database.
pub trait Dialect {
    /// How the `n`th parameter (1-based) of a statement is written; `kind`
    /// is the type bound to it.
    fn placeholder(n: usize, kind: ParamKind) -> String;

    /// A condition true when the tag list in column `tags` holds the
    /// parameter written `param`.
    fn has_tag(tags: &str, param: &str) -> String;
}

/// The type of a [`Param`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Text.
    Text,
    /// A 64-bit integer.
    Int,
    /// An id (a UUID): native where the database has the type, its
    /// hyphenated text elsewhere.
    Id,
}

/// A parameter to bind, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// Text.
    Text(String),
    /// A 64-bit integer.
    Int(i64),
    /// An id (see [`ParamKind::Id`]).
    Id(uuid::Uuid),
}

impl Param {
    /// Its type.
    pub fn kind(&self) -> ParamKind {
        match self {
            Param::Text(_) => ParamKind::Text,
            Param::Int(_) => ParamKind::Int,
            Param::Id(_) => ParamKind::Id,
        }
    }
}

/// A statement and the parameters to bind to it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL text.
    pub statement: String,
    /// Its parameters.
    pub params: Vec<Param>,
}

/// A statement being written: parameters are numbered as they are added.
struct Builder<D> {
    params: Vec<Param>,
    dialect: std::marker::PhantomData<D>,
}

impl<D: Dialect> Builder<D> {
    fn new() -> Self {
        Builder {
            params: Vec::new(),
            dialect: std::marker::PhantomData,
        }
    }

    /// Adds `param`; returns how the statement refers to it.
    fn param(&mut self, param: Param) -> String {
        let kind = param.kind();
        self.params.push(param);
        D::placeholder(self.params.len(), kind)
    }
}

/// A listing of executions, `select` (which selects from `executions`)
/// followed by the filter's conditions, newest first, paged. Only the
/// conditions that are set go into the statement, so each can use its
/// index (by function, by queue, by tags, the primary key for an id prefix,
/// by creation time for a time range).
pub fn execution_listing<D: Dialect>(
    select: &str,
    filter: &ExecutionFilter,
) -> Result<Statement, StoreError> {
    let mut b = Builder::<D>::new();
    let mut conditions = Vec::new();
    if let Some(status) = filter.status {
        let p = b.param(Param::Text(status.as_str().to_string()));
        conditions.push(format!("status = {p}"));
    }
    if let Some(function) = &filter.function {
        let p = b.param(Param::Text(function.clone()));
        conditions.push(format!("function = {p}"));
    }
    if let Some(queue) = &filter.queue {
        let p = b.param(Param::Text(queue.clone()));
        conditions.push(format!("queue = {p}"));
    }
    if let Some(tag) = &filter.tag {
        let p = b.param(Param::Text(tag.clone()));
        conditions.push(D::has_tag("executions.tags", &p));
    }
    if let Some(after) = filter.created_after {
        let p = b.param(Param::Int(after.0));
        conditions.push(format!("created_at >= {p}"));
    }
    if let Some(before) = filter.created_before {
        let p = b.param(Param::Int(before.0));
        conditions.push(format!("created_at < {p}"));
    }
    if let Some((lo, hi)) = filter.id_range().map_err(StoreError::InvalidRequest)? {
        let lo = b.param(Param::Id(lo));
        let hi = b.param(Param::Id(hi));
        conditions.push(format!("id BETWEEN {lo} AND {hi}"));
    }
    let limit = b.param(Param::Int(as_i64(filter.limit)));
    let offset = b.param(Param::Int(as_i64(filter.offset)));
    Ok(Statement {
        statement: format!(
            "{select}{} ORDER BY created_at DESC, id ASC LIMIT {limit} OFFSET {offset}",
            where_clause(&conditions)
        ),
        params: b.params,
    })
}

/// ` WHERE a AND b …`, or nothing when there is no condition.
pub fn where_clause<S: AsRef<str>>(conditions: &[S]) -> String {
    if conditions.is_empty() {
        return String::new();
    }
    let all: Vec<&str> = conditions.iter().map(AsRef::as_ref).collect();
    format!(" WHERE {}", all.join(" AND "))
}

/// A count or limit as SQL's 64-bit integer (saturating).
pub fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Question;
    impl Dialect for Question {
        fn placeholder(_: usize, _: ParamKind) -> String {
            "?".into()
        }
        fn has_tag(tags: &str, param: &str) -> String {
            format!("{param} IN {tags}")
        }
    }

    #[test]
    fn an_empty_filter_is_only_the_paging() {
        let filter = ExecutionFilter::default().limit(3);
        let s = execution_listing::<Question>("SELECT 1 FROM executions", &filter).unwrap();
        assert_eq!(
            s.statement,
            "SELECT 1 FROM executions ORDER BY created_at DESC, id ASC LIMIT ? OFFSET ?"
        );
        assert_eq!(s.params, [Param::Int(3), Param::Int(0)]);
    }

    #[test]
    fn a_bad_id_prefix_is_refused() {
        let filter = ExecutionFilter::default().id_prefix("xyz".to_string());
        let err = execution_listing::<Question>("SELECT 1 FROM executions", &filter).unwrap_err();
        assert!(matches!(err, StoreError::InvalidRequest(_)), "{err}");
    }

    #[test]
    fn limits_saturate() {
        assert_eq!(as_i64(usize::MAX), i64::MAX);
        assert_eq!(as_i64(7), 7);
    }
}
