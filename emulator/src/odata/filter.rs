//! `$filter`: parser and evaluator for SuperOffice's archive restriction language.
//!
//! Grammar (case-insensitive keywords): `expr := term (("and" | "or") term)*`, `and` binding
//! tighter than `or`; `term := "(" expr ")" | func "(" args ")" | column op [value]`;
//! values are `'quoted'` (with `''` escaping a quote), numbers, `true`/`false`, bare words or
//! lists `(v1, v2)`. Which comparison an operator makes depends on the column type: date
//! columns compare the day only (the "precision trap" of FACTS §3.1), date-time columns the
//! full timestamp.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::clock::Ts;
use crate::config::{ODataConfig, TimeOpsOnDateColumns};
use crate::error::SoError;
use crate::model::{Cell, ColType, Column};

/// A literal in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// A quoted or bare string.
    Str(String),
    /// A number.
    Num(f64),
    /// A list `(a, b)`.
    List(Vec<Lit>),
}

impl Lit {
    fn text(&self) -> String {
        match self {
            Lit::Str(s) => s.clone(),
            Lit::Num(n) => fmt_num(*n),
            Lit::List(v) => v.iter().map(Lit::text).collect::<Vec<_>>().join(","),
        }
    }

    fn num(&self) -> Option<f64> {
        match self {
            Lit::Num(n) => Some(*n),
            Lit::Str(s) => s.trim().parse().ok(),
            Lit::List(_) => None,
        }
    }

    fn items(&self) -> Vec<&Lit> {
        match self {
            Lit::List(v) => v.iter().collect(),
            other => vec![other],
        }
    }

    fn time(&self) -> Option<(Ts, bool)> {
        Ts::parse_literal(&self.text())
    }

    fn boolean(&self) -> Option<bool> {
        match self {
            Lit::Num(n) => Some(*n != 0.0),
            Lit::Str(s) if s.eq_ignore_ascii_case("true") || s == "1" => Some(true),
            Lit::Str(s) if s.eq_ignore_ascii_case("false") || s == "0" => Some(false),
            _ => None,
        }
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// A comparison operator, normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `eq`, `=`, `equals`, `is`, `date`.
    Eq,
    /// `ne`, `unequals`, `isNot`.
    Ne,
    /// `lt`, `less`.
    Lt,
    /// `le`.
    Le,
    /// `gt`, `greater`.
    Gt,
    /// `ge`.
    Ge,
    /// `before` (date semantics).
    Before,
    /// `beforeOrEqual`.
    BeforeOrEqual,
    /// `after` (date semantics).
    After,
    /// `afterOrEqual`.
    AfterOrEqual,
    /// `afterTime` (≥ on the timestamp).
    AfterTime,
    /// `beforeTime` (< on the timestamp).
    BeforeTime,
    /// `dateTime` (same timestamp).
    DateTime,
    /// `between`, `dateBetween` (inclusive).
    Between,
    /// `begins`, `startswith(…)`.
    Begins,
    /// `notBegins`.
    NotBegins,
    /// `contains`, `substringof(…)`.
    Contains,
    /// `notContains`.
    NotContains,
    /// `endswith(…)`.
    Ends,
    /// `oneOf`, `in`, `associateIsOneOf`.
    OneOf,
    /// `notOneOf`, `associateIsNotOneOf`.
    NotOneOf,
    /// `set` (bool true / non-zero).
    Set,
    /// `today`.
    Today,
    /// `beforeToday`.
    BeforeToday,
    /// `afterToday`.
    AfterToday,
    /// `currentAssociate`.
    CurrentAssociate,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s.to_ascii_lowercase().as_str() {
            "eq" | "=" | "equals" | "is" | "date" => Op::Eq,
            "ne" | "unequals" | "isnot" | "<>" | "!=" => Op::Ne,
            "lt" | "less" | "<" => Op::Lt,
            "le" | "<=" => Op::Le,
            "gt" | "greater" | ">" => Op::Gt,
            "ge" | ">=" => Op::Ge,
            "before" => Op::Before,
            "beforeorequal" => Op::BeforeOrEqual,
            "after" => Op::After,
            "afterorequal" => Op::AfterOrEqual,
            "aftertime" => Op::AfterTime,
            "beforetime" => Op::BeforeTime,
            "datetime" => Op::DateTime,
            "between" | "datebetween" => Op::Between,
            "begins" => Op::Begins,
            "notbegins" => Op::NotBegins,
            "contains" => Op::Contains,
            "notcontains" => Op::NotContains,
            "oneof" | "in" | "associateisoneof" => Op::OneOf,
            "notoneof" | "associateisnotoneof" => Op::NotOneOf,
            "set" => Op::Set,
            "today" => Op::Today,
            "beforetoday" => Op::BeforeToday,
            "aftertoday" => Op::AfterToday,
            "currentassociate" => Op::CurrentAssociate,
            _ => return None,
        })
    }

    fn unary(self) -> bool {
        matches!(
            self,
            Op::Today | Op::BeforeToday | Op::AfterToday | Op::CurrentAssociate | Op::Set
        )
    }
}

/// One restriction on one column.
#[derive(Debug, Clone)]
pub struct Clause {
    /// The column (canonical name).
    pub column: &'static str,
    /// Its type.
    pub ty: ColType,
    /// Operator.
    pub op: Op,
    /// Value (absent for unary operators).
    pub value: Option<Lit>,
}

/// A parsed filter.
#[derive(Debug, Clone)]
pub enum Expr {
    /// All must hold.
    And(Vec<Expr>),
    /// Any must hold.
    Or(Vec<Expr>),
    /// A restriction.
    Clause(Clause),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    Open,
    Close,
    Comma,
}

fn lex(s: &str) -> Result<Vec<Tok>, SoError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '\'' | '"' => {
                let quote = c;
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(SoError::bad_request("Unterminated string in $filter")),
                        Some(&q) if q == quote && chars.get(i + 1) == Some(&quote) => {
                            v.push(quote);
                            i += 2;
                        }
                        Some(&q) if q == quote => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            v.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"(),'\"".contains(chars[i]) {
                    i += 1;
                }
                let w: String = chars[start..i].iter().collect();
                match w.parse::<f64>() {
                    Ok(n)
                        if w.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') =>
                    {
                        out.push(Tok::Num(n))
                    }
                    _ => out.push(Tok::Word(w)),
                }
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    columns: &'a [Column],
}

/// Finds a column by name, case-insensitively.
pub fn find_column(columns: &[Column], name: &str) -> Option<Column> {
    columns
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
        .copied()
}

fn unknown_column(name: &str, columns: &[Column]) -> SoError {
    let known: Vec<&str> = columns.iter().map(|c| c.name).collect();
    SoError::bad_request(format!(
        "Unknown column '{name}'. Known columns: {}",
        known.join(", ")
    ))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn expr(&mut self) -> Result<Expr, SoError> {
        let mut ors = vec![self.and_expr()?];
        while self.keyword("or") {
            self.pos += 1;
            ors.push(self.and_expr()?);
        }
        Ok(if ors.len() == 1 {
            ors.remove(0)
        } else {
            Expr::Or(ors)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, SoError> {
        let mut ands = vec![self.term()?];
        while self.keyword("and") {
            self.pos += 1;
            ands.push(self.term()?);
        }
        Ok(if ands.len() == 1 {
            ands.remove(0)
        } else {
            Expr::And(ands)
        })
    }

    fn term(&mut self) -> Result<Expr, SoError> {
        match self.next() {
            Some(Tok::Open) => {
                let e = self.expr()?;
                match self.next() {
                    Some(Tok::Close) => Ok(e),
                    _ => Err(SoError::bad_request("Missing ')' in $filter")),
                }
            }
            Some(Tok::Word(w)) if self.peek() == Some(&Tok::Open) && is_function(&w) => {
                self.function(&w)
            }
            Some(Tok::Word(w)) => {
                let column = find_column(self.columns, &w)
                    .ok_or_else(|| unknown_column(&w, self.columns))?;
                let op_word = match self.next() {
                    Some(Tok::Word(o)) => o,
                    _ => {
                        return Err(SoError::bad_request(format!(
                            "Missing operator after '{w}' in $filter"
                        )));
                    }
                };
                let op = Op::parse(&op_word).ok_or_else(|| {
                    SoError::bad_request(format!("Unsupported operator '{op_word}' in $filter"))
                })?;
                let value = if op.unary() && !self.starts_value() {
                    None
                } else {
                    Some(self.value()?)
                };
                Ok(Expr::Clause(Clause {
                    column: column.name,
                    ty: column.ty,
                    op,
                    value,
                }))
            }
            other => Err(SoError::bad_request(format!(
                "Unexpected {other:?} in $filter"
            ))),
        }
    }

    fn starts_value(&self) -> bool {
        match self.peek() {
            Some(Tok::Str(_)) | Some(Tok::Num(_)) | Some(Tok::Open) => true,
            Some(Tok::Word(w)) => !w.eq_ignore_ascii_case("and") && !w.eq_ignore_ascii_case("or"),
            _ => false,
        }
    }

    fn value(&mut self) -> Result<Lit, SoError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Num(n)) => Ok(Lit::Num(n)),
            Some(Tok::Word(w)) => Ok(Lit::Str(w)),
            Some(Tok::Open) => {
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(&Tok::Close) {
                        self.pos += 1;
                        break;
                    }
                    items.push(self.value()?);
                    match self.next() {
                        Some(Tok::Comma) => continue,
                        Some(Tok::Close) => break,
                        _ => return Err(SoError::bad_request("Malformed list in $filter")),
                    }
                }
                Ok(Lit::List(items))
            }
            other => Err(SoError::bad_request(format!(
                "Expected a value in $filter, got {other:?}"
            ))),
        }
    }

    fn function(&mut self, name: &str) -> Result<Expr, SoError> {
        self.pos += 1; // '('
        let mut args = Vec::new();
        loop {
            match self.next() {
                Some(Tok::Word(w)) => args.push(Lit::Str(w)),
                Some(Tok::Str(s)) => args.push(Lit::List(vec![Lit::Str(s)])),
                Some(Tok::Num(n)) => args.push(Lit::List(vec![Lit::Num(n)])),
                _ => {
                    return Err(SoError::bad_request(format!(
                        "Malformed arguments of {name}()"
                    )));
                }
            }
            match self.next() {
                Some(Tok::Comma) => continue,
                Some(Tok::Close) => break,
                _ => {
                    return Err(SoError::bad_request(format!(
                        "Malformed arguments of {name}()"
                    )));
                }
            }
        }
        // Bare words are column names; quoted values arrive wrapped in a one-item list.
        let col = args.iter().find_map(|a| match a {
            Lit::Str(w) => Some(w.clone()),
            _ => None,
        });
        let val = args.iter().find_map(|a| match a {
            Lit::List(v) => v.first().cloned(),
            _ => None,
        });
        let (Some(col), Some(val), 2) = (col, val, args.len()) else {
            return Err(SoError::bad_request(format!(
                "{name}() takes a column and a quoted value"
            )));
        };
        let column =
            find_column(self.columns, &col).ok_or_else(|| unknown_column(&col, self.columns))?;
        let op = match name.to_ascii_lowercase().as_str() {
            "startswith" => Op::Begins,
            "endswith" => Op::Ends,
            _ => Op::Contains,
        };
        Ok(Expr::Clause(Clause {
            column: column.name,
            ty: column.ty,
            op,
            value: Some(val),
        }))
    }
}

fn is_function(w: &str) -> bool {
    ["startswith", "endswith", "substringof"]
        .iter()
        .any(|f| f.eq_ignore_ascii_case(w))
}

/// Parses a `$filter` against a provider's columns.
pub fn parse(filter: &str, columns: &[Column]) -> Result<Option<Expr>, SoError> {
    let toks = lex(filter)?;
    if toks.is_empty() {
        return Ok(None);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        columns,
    };
    let e = p.expr()?;
    if p.pos < p.toks.len() {
        return Err(SoError::bad_request(format!(
            "Unexpected {:?} in $filter",
            p.toks[p.pos]
        )));
    }
    validate(&e)?;
    Ok(Some(e))
}

fn validate(e: &Expr) -> Result<(), SoError> {
    match e {
        Expr::And(v) | Expr::Or(v) => v.iter().try_for_each(validate),
        Expr::Clause(c) => {
            let bad = |what: &str| {
                Err(SoError::bad_request(format!(
                    "Operator {:?} on column '{}' needs {what}",
                    c.op, c.column
                )))
            };
            match (&c.value, c.op) {
                (None, op) if !op.unary() => bad("a value"),
                (Some(v), Op::Between) if v.items().len() != 2 => bad("two values: ('from','to')"),
                (Some(v), _)
                    if matches!(c.ty, ColType::Date | ColType::DateTime)
                        && !matches!(c.op, Op::OneOf | Op::NotOneOf) =>
                {
                    if v.items().iter().all(|i| i.time().is_some()) {
                        Ok(())
                    } else {
                        bad("a date literal such as '2026-03-05' or '2026-03-05T14:00:00'")
                    }
                }
                _ => Ok(()),
            }
        }
    }
}

/// Evaluation context: settings and "now".
#[derive(Debug, Clone, Copy)]
pub struct EvalCx<'a> {
    /// OData settings (inclusive `after`, precision of time operators).
    pub settings: &'a ODataConfig,
    /// Today (for `today` & co).
    pub now: Ts,
    /// The caller's associate (for `currentAssociate`).
    pub associate: i32,
}

/// Evaluates a filter against a row's cell accessor.
pub fn eval<'r>(e: &Expr, cell: &dyn Fn(&str) -> Cell<'r>, cx: &EvalCx<'_>) -> bool {
    match e {
        Expr::And(v) => v.iter().all(|x| eval(x, cell, cx)),
        Expr::Or(v) => v.iter().any(|x| eval(x, cell, cx)),
        Expr::Clause(c) => eval_clause(c, &cell(c.column), cx),
    }
}

fn eval_clause(c: &Clause, v: &Cell<'_>, cx: &EvalCx<'_>) -> bool {
    let lit = c.value.as_ref();
    match c.ty {
        ColType::Date | ColType::DateTime => {
            let Cell::Time(t) = v else { return false };
            eval_time(c, *t, cx)
        }
        ColType::Int | ColType::Dec => {
            let x = match v {
                Cell::Int(i) => *i as f64,
                Cell::Dec(d) => *d,
                Cell::Item(i, _) => *i as f64,
                _ => return false,
            };
            eval_num(c.op, x, lit)
        }
        ColType::Bool => {
            let Cell::Bool(b) = v else { return false };
            let want = lit.and_then(Lit::boolean).unwrap_or(true);
            match c.op {
                Op::Ne => *b != want,
                _ => *b == want,
            }
        }
        ColType::Str => {
            let s = match v {
                Cell::Str(s) => s.as_ref(),
                Cell::Item(_, s) => s.as_ref(),
                _ => "",
            };
            eval_str(c.op, s, lit)
        }
        ColType::List | ColType::Assoc => {
            let Cell::Item(id, label) = v else {
                return false;
            };
            if c.op == Op::CurrentAssociate {
                return *id == i64::from(cx.associate);
            }
            let hit = |l: &Lit| match l.num() {
                Some(n) => (*id as f64) == n,
                None => l.text().eq_ignore_ascii_case(label),
            };
            let items = lit.map(Lit::items).unwrap_or_default();
            match c.op {
                Op::Eq | Op::OneOf => items.iter().any(|l| hit(l)),
                Op::Ne | Op::NotOneOf => !items.iter().any(|l| hit(l)),
                Op::Set => *id != 0,
                _ => eval_num(c.op, *id as f64, lit),
            }
        }
    }
}

fn eval_num(op: Op, x: f64, lit: Option<&Lit>) -> bool {
    let items: Vec<f64> = lit
        .map(|l| l.items().iter().filter_map(|i| i.num()).collect())
        .unwrap_or_default();
    let first = items.first().copied();
    match (op, first) {
        (Op::Eq, Some(n)) => x == n,
        (Op::Ne, Some(n)) => x != n,
        (Op::Lt, Some(n)) | (Op::Before, Some(n)) => x < n,
        (Op::Le, Some(n)) | (Op::BeforeOrEqual, Some(n)) => x <= n,
        (Op::Gt, Some(n)) | (Op::After, Some(n)) => x > n,
        (Op::Ge, Some(n)) | (Op::AfterOrEqual, Some(n)) => x >= n,
        (Op::Between, _) if items.len() == 2 => x >= items[0] && x <= items[1],
        (Op::OneOf, _) => items.contains(&x),
        (Op::NotOneOf, _) => !items.contains(&x),
        (Op::Set, _) => x != 0.0,
        _ => false,
    }
}

/// `s` in lower case, allocating only when something changes.
fn lower(s: &str) -> Cow<'_, str> {
    if s.is_ascii() && !s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

fn eval_str(op: Op, s: &str, lit: Option<&Lit>) -> bool {
    // Called once per row: literals are borrowed and only non-lowercase text is copied.
    let items: Vec<Cow<'_, str>> = lit
        .map(|l| {
            l.items()
                .into_iter()
                .map(|i| match i {
                    Lit::Str(text) => Cow::Borrowed(text.as_str()),
                    other => Cow::Owned(other.text()),
                })
                .collect()
        })
        .unwrap_or_default();
    let Some(first) = items.first() else {
        return matches!(op, Op::Set) && !s.is_empty();
    };
    let (ls, lf) = (lower(s), lower(first));
    let (ls, lf) = (ls.as_ref(), lf.as_ref());
    match op {
        Op::Eq => ls == lf,
        Op::Ne => ls != lf,
        Op::Begins => ls.starts_with(lf),
        Op::NotBegins => !ls.starts_with(lf),
        Op::Contains => ls.contains(lf),
        Op::NotContains => !ls.contains(lf),
        Op::Ends => ls.ends_with(lf),
        Op::OneOf => items.iter().any(|i| i.eq_ignore_ascii_case(s)),
        Op::NotOneOf => !items.iter().any(|i| i.eq_ignore_ascii_case(s)),
        Op::Lt | Op::Before => ls < lf,
        Op::Le | Op::BeforeOrEqual => ls <= lf,
        Op::Gt | Op::After => ls > lf,
        Op::Ge | Op::AfterOrEqual => ls >= lf,
        Op::Between if items.len() == 2 => ls >= lf && ls <= &*lower(&items[1]),
        Op::Set => !s.is_empty(),
        _ => false,
    }
}

fn eval_time(c: &Clause, t: Ts, cx: &EvalCx<'_>) -> bool {
    let day_only = c.ty == ColType::Date;
    let time_ops_by_day =
        day_only && cx.settings.time_ops_on_date_columns == TimeOpsOnDateColumns::DayPrecision;
    let today = cx.now.day();
    match c.op {
        Op::Today => return t.day() == today,
        Op::BeforeToday => return t.day() < today,
        Op::AfterToday => return t.day() > today,
        _ => {}
    }
    let items: Vec<(Ts, bool)> = c
        .value
        .as_ref()
        .map(|l| l.items().iter().filter_map(|i| i.time()).collect())
        .unwrap_or_default();
    let Some(&(lit, has_time)) = items.first() else {
        return false;
    };
    // Date columns compare day numbers; date-time columns compare seconds, except that a
    // date-only literal against `eq`/`date` means "that day".
    let by_day = |a: Ts, b: Ts| a.day().cmp(&b.day());
    let by_time = |a: Ts, b: Ts| a.cmp(&b);
    let ord = if day_only {
        by_day(t, lit)
    } else {
        by_time(t, lit)
    };
    let after_incl = cx.settings.after_is_inclusive;
    let before_incl = cx.settings.before_is_inclusive;
    match c.op {
        Op::Eq => {
            if day_only || !has_time {
                t.day() == lit.day()
            } else {
                t == lit
            }
        }
        Op::Ne => {
            if day_only || !has_time {
                t.day() != lit.day()
            } else {
                t != lit
            }
        }
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
        Op::After => {
            if day_only || !has_time {
                let o = by_day(t, lit);
                o == Ordering::Greater || (after_incl && o == Ordering::Equal)
            } else {
                ord == Ordering::Greater || (after_incl && ord == Ordering::Equal)
            }
        }
        Op::AfterOrEqual => ord != Ordering::Less,
        Op::Before => {
            if day_only || !has_time {
                let o = by_day(t, lit);
                o == Ordering::Less || (before_incl && o == Ordering::Equal)
            } else {
                ord == Ordering::Less || (before_incl && ord == Ordering::Equal)
            }
        }
        Op::BeforeOrEqual => ord != Ordering::Greater,
        Op::AfterTime => {
            if time_ops_by_day {
                by_day(t, lit) != Ordering::Less
            } else {
                t >= lit
            }
        }
        Op::BeforeTime => {
            if time_ops_by_day {
                by_day(t, lit) == Ordering::Less
            } else {
                t < lit
            }
        }
        Op::DateTime => {
            if time_ops_by_day {
                t.day() == lit.day()
            } else {
                t == lit
            }
        }
        Op::Between => {
            let Some(&(hi, hi_time)) = items.get(1) else {
                return false;
            };
            if day_only {
                t.day() >= lit.day() && t.day() <= hi.day()
            } else {
                let lo_ok = if has_time {
                    t >= lit
                } else {
                    t.day() >= lit.day()
                };
                let hi_ok = if hi_time {
                    t <= hi
                } else {
                    t.day() <= hi.day()
                };
                lo_ok && hi_ok
            }
        }
        Op::OneOf => items.iter().any(|(x, _)| {
            if day_only {
                x.day() == t.day()
            } else {
                *x == t
            }
        }),
        Op::NotOneOf => !items.iter().any(|(x, _)| {
            if day_only {
                x.day() == t.day()
            } else {
                *x == t
            }
        }),
        _ => false,
    }
}

/// The clauses every match must satisfy: `e` itself, or the clauses of a top-level `and`.
fn top_clauses(e: Option<&Expr>) -> Vec<&Clause> {
    match e {
        Some(Expr::Clause(c)) => vec![c],
        Some(Expr::And(v)) => v
            .iter()
            .filter_map(|x| match x {
                Expr::Clause(c) => Some(c),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The values a string column must take for `e` to hold, when `e` is a clause or conjunction
/// with `column eq 'x'` or `column oneOf('x', 'y', …)` at its top level: an index lookup on
/// those values (lower-cased) finds a superset of the matching rows. `None` when the filter
/// does not pin the column.
pub fn str_candidates(e: Option<&Expr>, column: &str) -> Option<Vec<String>> {
    top_clauses(e)
        .into_iter()
        .find(|c| c.column.eq_ignore_ascii_case(column) && matches!(c.op, Op::Eq | Op::OneOf))
        .and_then(|c| c.value.as_ref())
        .map(|v| v.items().iter().map(|i| i.text().to_lowercase()).collect())
}

/// Primary-key bounds implied by top-level `and` clauses on the key column, for the fast path.
pub fn pk_bounds(e: Option<&Expr>, pk: &str) -> (i64, i64) {
    let mut lo = i64::MIN;
    let mut hi = i64::MAX;
    for c in top_clauses(e).into_iter().filter(|c| c.column == pk) {
        let Some(n) = c
            .value
            .as_ref()
            .and_then(|v| v.items().first().and_then(|i| i.num()))
        else {
            continue;
        };
        let n = n.floor() as i64;
        match c.op {
            Op::Eq => {
                lo = lo.max(n);
                hi = hi.min(n);
            }
            Op::Gt | Op::After => lo = lo.max(n + 1),
            Op::Ge | Op::AfterOrEqual => lo = lo.max(n),
            Op::Lt | Op::Before => hi = hi.min(n - 1),
            Op::Le | Op::BeforeOrEqual => hi = hi.min(n),
            _ => {}
        }
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::model::col;

    static COLS: &[Column] = &[
        col("id", ColType::Int),
        col("name", ColType::Str),
        col("updatedDate", ColType::Date),
        col("lastChanged", ColType::DateTime),
        col("category", ColType::List),
        col("stop", ColType::Bool),
    ];

    fn row(name: &str, updated: Ts) -> impl Fn(&str) -> Cell<'static> + '_ {
        move |c: &str| match c {
            "id" => Cell::Int(7),
            "name" => Cell::Str(Cow::Owned(name.to_string())),
            "updatedDate" | "lastChanged" => Cell::Time(updated),
            "category" => Cell::Item(3, Cow::Borrowed("Partner")),
            "stop" => Cell::Bool(false),
            _ => Cell::Null,
        }
    }

    fn check(filter: &str, name: &str, updated: Ts, settings: &ODataConfig) -> bool {
        let e = parse(filter, COLS).unwrap().unwrap();
        let cx = EvalCx {
            settings,
            now: Ts::from_parts(2026, 3, 5, 12, 0, 0),
            associate: 1,
        };
        eval(&e, &row(name, updated), &cx)
    }

    #[test]
    fn date_columns_compare_the_day_only() {
        let s = ODataConfig::default();
        let t = Ts::from_parts(2026, 3, 5, 14, 22, 10);
        assert!(check("updatedDate eq '2026-03-05'", "x", t, &s));
        assert!(
            check("updatedDate eq '2026-03-05T01:00:00'", "x", t, &s),
            "time part ignored"
        );
        assert!(
            !check("updatedDate after '2026-03-05'", "x", t, &s),
            "after is exclusive by default"
        );
        let incl = ODataConfig {
            after_is_inclusive: true,
            ..ODataConfig::default()
        };
        assert!(check("updatedDate after '2026-03-05'", "x", t, &incl));
        assert!(check("updatedDate after '2026-3-4'", "x", t, &s));
        assert!(
            !check("updatedDate gt '2026-03-05T10:00:00'", "x", t, &s),
            "same day is not greater"
        );
        assert!(
            check("updatedDate afterTime '2026-03-05T23:00:00'", "x", t, &s),
            "trap: day precision"
        );
        let full = ODataConfig {
            time_ops_on_date_columns: TimeOpsOnDateColumns::FullPrecision,
            ..ODataConfig::default()
        };
        assert!(!check(
            "updatedDate afterTime '2026-03-05T23:00:00'",
            "x",
            t,
            &full
        ));
        assert!(check(
            "updatedDate between ('2026-03-01','2026-03-05')",
            "x",
            t,
            &s
        ));
        assert!(check(
            "updatedDate before '2026-03-06' and updatedDate today",
            "x",
            t,
            &s
        ));
    }

    #[test]
    fn datetime_columns_compare_seconds() {
        let s = ODataConfig::default();
        let t = Ts::from_parts(2026, 3, 5, 14, 22, 10);
        assert!(check("lastChanged gt '2026-03-05T14:22:09'", "x", t, &s));
        assert!(!check("lastChanged gt '2026-03-05T14:22:10'", "x", t, &s));
        assert!(check(
            "lastChanged afterTime '2026-03-05T14:22:10'",
            "x",
            t,
            &s
        ));
        assert!(!check(
            "lastChanged beforeTime '2026-03-05T14:22:10'",
            "x",
            t,
            &s
        ));
        assert!(
            check("lastChanged eq '2026-03-05'", "x", t, &s),
            "date literal means that day"
        );
    }

    #[test]
    fn strings_lists_numbers_and_functions() {
        let s = ODataConfig::default();
        let t = Ts(0);
        assert!(check(
            "name begins 'Nor' and name contains 'dic'",
            "Nordic AS",
            t,
            &s
        ));
        assert!(check("startswith(name,'nor')", "Nordic AS", t, &s));
        assert!(check("substringof('dic', name)", "Nordic AS", t, &s));
        assert!(check("name eq 'It''s'", "It's", t, &s));
        assert!(check("category oneOf (2,3)", "x", t, &s));
        assert!(check("category eq 'partner'", "x", t, &s));
        assert!(!check("category notOneOf (3)", "x", t, &s));
        assert!(check(
            "id between (5, 7) and id ne 8 and id le 7 and id ge 7 and id lt 8 and id gt 6",
            "x",
            t,
            &s
        ));
        assert!(check(
            "id eq 1 or (name is 'x' and stop eq false)",
            "x",
            t,
            &s
        ));
        assert!(check("stop eq 0", "x", t, &s));
    }

    #[test]
    fn rejects_malformed_filters() {
        for bad in [
            "nosuch eq 1",
            "name frobnicates 'x'",
            "name eq",
            "updatedDate after 'soon'",
            "(name eq 'x'",
            "updatedDate between ('2026-01-01')",
        ] {
            assert!(parse(bad, COLS).is_err(), "{bad}");
        }
        assert!(parse("  ", COLS).unwrap().is_none());
    }

    #[test]
    fn pk_bounds_from_top_level_clauses() {
        let e = parse("id gt 10 and id le 20 and name begins 'a'", COLS).unwrap();
        assert_eq!(pk_bounds(e.as_ref(), "id"), (11, 20));
        let e = parse("id gt 10 or id lt 3", COLS).unwrap();
        assert_eq!(pk_bounds(e.as_ref(), "id"), (i64::MIN, i64::MAX));
    }
}
