//! Recursive-descent parser for the SQL subset the MySQL side answers (module docs of
//! [`super`] list it), producing a [`Statement`].
//!
//! Owns the grammar: keywords are case-insensitive, identifiers may be backtick-quoted and
//! `db.table`-qualified, a trailing `;` is optional, and exactly one statement is accepted. The
//! parser only checks shape; names, types and rules are checked when the statement runs. Input it
//! does not understand becomes a 1064 syntax error at the offending token, and statements that
//! StarRocks has but the sim does not model become a clear "not supported" error, never a
//! silently wrong answer.

use super::error::{SqlError, SqlResult};
use super::lexer::{tokenize, Tok, Token};

/// `[db.]name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectName {
    pub(crate) db: Option<String>,
    pub(crate) name: String,
}

/// A literal value in a predicate, DEFAULT or select list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Null,
    /// Number as written (may carry a leading `-`).
    Num(String),
    Str(String),
    Bool(bool),
}

impl Literal {
    /// The literal's text (`None` for NULL); booleans are `1`/`0` as in MySQL.
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Literal::Null => None,
            Literal::Num(s) | Literal::Str(s) => Some(s.clone()),
            Literal::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        }
    }
}

/// An expression in a select list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// A column (the last part of a qualified name).
    Column(String),
    Literal(Literal),
    /// `@@name`.
    SysVar(String),
    /// `@name`.
    UserVar(String),
    /// `name(args)`; `star` for `COUNT(*)`.
    Func {
        name: String,
        args: Vec<Expr>,
        star: bool,
    },
}

/// One select-list entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SelectItem {
    /// `*` or `t.*`.
    Star,
    /// An expression with its output name (alias, else the text as written).
    Expr { expr: Expr, name: String },
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    NullSafeEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn from_sym(sym: &str) -> Option<CmpOp> {
        Some(match sym {
            "=" => CmpOp::Eq,
            "<=>" => CmpOp::NullSafeEq,
            "<>" | "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            _ => return None,
        })
    }

    /// The operator with its operands swapped (`1 < x` is `x > 1`).
    fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            other => other,
        }
    }
}

/// One conjunct of a WHERE clause.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Predicate {
    Cmp {
        column: String,
        op: CmpOp,
        value: Literal,
    },
    IsNull {
        column: String,
        negated: bool,
    },
    In {
        column: String,
        values: Vec<Literal>,
        negated: bool,
    },
    Like {
        column: String,
        pattern: String,
        negated: bool,
    },
}

/// An ORDER BY key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OrderKey {
    Column(String),
    /// 1-based select-list position.
    Position(usize),
}

/// An ORDER BY item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrderItem {
    pub(crate) key: OrderKey,
    pub(crate) desc: bool,
}

/// WHERE / ORDER BY / LIMIT shared by SELECT and the filterable SHOWs.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Query {
    pub(crate) filter: Vec<Predicate>,
    /// `GROUP BY` columns (SELECT only).
    pub(crate) group_by: Vec<String>,
    pub(crate) order: Vec<OrderItem>,
    pub(crate) limit: Option<u64>,
    pub(crate) offset: u64,
}

/// `SELECT`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Select {
    pub(crate) items: Vec<SelectItem>,
    pub(crate) from: Option<ObjectName>,
    pub(crate) query: Query,
}

/// A column definition in CREATE TABLE or ADD COLUMN.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColumnSpec {
    pub(crate) name: String,
    /// The type as written, for [`crate::catalog::ColumnType::parse`].
    pub(crate) type_text: String,
    /// Byte position of the type, for error messages.
    pub(crate) type_pos: usize,
    /// `Some(false)` for NOT NULL, `Some(true)` for NULL, `None` when not said.
    pub(crate) nullable: Option<bool>,
    /// DEFAULT value text (`DEFAULT NULL` is `None`).
    pub(crate) default: Option<String>,
    pub(crate) comment: String,
}

/// `CREATE TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CreateTable {
    pub(crate) if_not_exists: bool,
    pub(crate) name: ObjectName,
    pub(crate) columns: Vec<ColumnSpec>,
    pub(crate) primary_key: Vec<String>,
    pub(crate) distribution: Vec<String>,
    pub(crate) buckets: Option<u64>,
    pub(crate) properties: Vec<(String, String)>,
    pub(crate) comment: Option<String>,
}

/// One ALTER TABLE clause.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AlterOp {
    Add {
        column: ColumnSpec,
        after: Option<String>,
        first: bool,
    },
    Drop(String),
    /// `MODIFY COLUMN name type ...`: a new type for a value column.
    Modify(ColumnSpec),
}

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Statement {
    Select(Select),
    /// SET (other than user variables), BEGIN, COMMIT, ROLLBACK: accepted, no effect.
    Noop,
    /// `SET @a = literal [, @b = literal]`.
    SetUserVars(Vec<(String, Literal)>),
    Use(ObjectName),
    ShowDatabases {
        like: Option<String>,
    },
    ShowTables {
        db: Option<String>,
        full: bool,
        like: Option<String>,
    },
    ShowCreateTable(ObjectName),
    ShowCreateDatabase(String),
    Describe(ObjectName),
    ShowAlter {
        db: Option<String>,
        query: Query,
    },
    ShowVariables {
        like: Option<String>,
        query: Query,
    },
    ShowWarnings,
    ShowBackends,
    ShowFrontends,
    CreateDatabase {
        name: String,
        if_not_exists: bool,
    },
    DropDatabase {
        name: String,
        if_exists: bool,
    },
    CreateTable(CreateTable),
    DropTable {
        name: ObjectName,
        if_exists: bool,
    },
    Truncate(ObjectName),
    Alter {
        table: ObjectName,
        ops: Vec<AlterOp>,
        timeout: Option<u64>,
    },
    CancelAlter(ObjectName),
}

/// Parses one statement (optionally followed by `;`).
pub(crate) fn parse(sql: &str) -> SqlResult<Statement> {
    let tokens = tokenize(sql).map_err(|e| SqlError::syntax(sql, e.pos, &e.message))?;
    if tokens.iter().all(|t| t.tok == Tok::Sym(";")) {
        return Err(SqlError::new(1065, "42000", "Query was empty"));
    }
    let mut p = Parser {
        sql,
        tokens,
        pos: 0,
    };
    let statement = p.statement()?;
    p.eat_sym(";");
    if p.pos < p.tokens.len() {
        return Err(p.unexpected());
    }
    Ok(statement)
}

/// Words that end a select item or FROM clause rather than being an alias.
const CLAUSE_WORDS: [&str; 16] = [
    "FROM", "WHERE", "ORDER", "LIMIT", "GROUP", "HAVING", "UNION", "INTO", "FOR", "LOCK", "OFFSET",
    "JOIN", "LEFT", "RIGHT", "INNER", "CROSS",
];

struct Parser<'a> {
    sql: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, offset: usize) -> Option<&Tok> {
        self.tokens.get(self.pos + offset).map(|t| &t.tok)
    }

    fn start_of_current(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map_or(self.sql.len(), |t| t.start)
    }

    fn end_of_previous(&self) -> usize {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or(0, |t| t.end)
    }

    fn unexpected(&self) -> SqlError {
        match self.tokens.get(self.pos) {
            Some(t) => SqlError::syntax(
                self.sql,
                t.start,
                &format!("Unexpected input '{}'", &self.sql[t.start..t.end]),
            ),
            None => SqlError::syntax(self.sql, self.sql.len(), "Unexpected end of input"),
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn is_kw_at(&self, offset: usize, kw: &str) -> bool {
        matches!(self.peek_at(offset), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> SqlResult<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn eat_kws(&mut self, kws: &[&str]) -> bool {
        if kws.iter().enumerate().all(|(i, kw)| self.is_kw_at(i, kw)) {
            self.pos += kws.len();
            true
        } else {
            false
        }
    }

    fn is_sym(&self, sym: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym)
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        if self.is_sym(sym) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, sym: &str) -> SqlResult<()> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.tokens.len() || (self.is_sym(";") && self.pos + 1 == self.tokens.len())
    }

    /// Skips everything up to the end of the statement.
    fn skip_rest(&mut self) {
        while !self.at_end() {
            self.pos += 1;
        }
    }

    fn ident(&mut self) -> SqlResult<String> {
        match self.peek() {
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn string(&mut self) -> SqlResult<String> {
        match self.peek() {
            Some(Tok::Str(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn unsigned(&mut self) -> SqlResult<u64> {
        match self.peek() {
            Some(Tok::Num(n)) => {
                let value = n.parse::<u64>().map_err(|_| self.unexpected())?;
                self.pos += 1;
                Ok(value)
            }
            _ => Err(self.unexpected()),
        }
    }

    /// `name` or `db.name` (a leading `default_catalog.` is accepted and dropped).
    fn object_name(&mut self) -> SqlResult<ObjectName> {
        let first = self.ident()?;
        if !self.eat_sym(".") {
            return Ok(ObjectName {
                db: None,
                name: first,
            });
        }
        let second = self.ident()?;
        if self.eat_sym(".") {
            let third = self.ident()?;
            if !first.eq_ignore_ascii_case("default_catalog") {
                return Err(SqlError::unsupported(format!("catalog '{first}'")));
            }
            return Ok(ObjectName {
                db: Some(second),
                name: third,
            });
        }
        Ok(ObjectName {
            db: Some(first),
            name: second,
        })
    }

    fn ident_list(&mut self) -> SqlResult<Vec<String>> {
        self.expect_sym("(")?;
        let mut out = vec![self.ident()?];
        while self.eat_sym(",") {
            out.push(self.ident()?);
        }
        self.expect_sym(")")?;
        Ok(out)
    }

    fn literal(&mut self) -> SqlResult<Literal> {
        let lit = match self.peek() {
            Some(Tok::Num(n)) => Literal::Num(n.clone()),
            Some(Tok::Str(s)) => Literal::Str(s.clone()),
            Some(Tok::Sym("-")) => {
                if let Some(Tok::Num(n)) = self.peek_at(1) {
                    let n = format!("-{n}");
                    self.pos += 2;
                    return Ok(Literal::Num(n));
                }
                return Err(self.unexpected());
            }
            Some(Tok::Sym("+")) => {
                if let Some(Tok::Num(n)) = self.peek_at(1) {
                    let n = n.clone();
                    self.pos += 2;
                    return Ok(Literal::Num(n));
                }
                return Err(self.unexpected());
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("NULL") => Literal::Null,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("TRUE") => Literal::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("FALSE") => Literal::Bool(false),
            _ => return Err(self.unexpected()),
        };
        self.pos += 1;
        Ok(lit)
    }

    fn is_literal_start(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(_) | Tok::Str(_) | Tok::Sym("-") | Tok::Sym("+")) => true,
            Some(Tok::Word(w)) => ["NULL", "TRUE", "FALSE"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k)),
            _ => false,
        }
    }

    /// `ident [.ident]*` → the last part (columns may be qualified by table or db.table).
    fn column_ref(&mut self) -> SqlResult<String> {
        let mut name = self.ident()?;
        while self.eat_sym(".") {
            name = self.ident()?;
        }
        Ok(name)
    }

    fn statement(&mut self) -> SqlResult<Statement> {
        let Some(Tok::Word(first)) = self.peek() else {
            return Err(self.unexpected());
        };
        let first = first.to_ascii_uppercase();
        match first.as_str() {
            "SELECT" => {
                self.pos += 1;
                self.select().map(Statement::Select)
            }
            "SET" if matches!(self.peek_at(1), Some(Tok::UserVar(_))) => {
                self.pos += 1;
                let mut assignments = Vec::new();
                loop {
                    let Some(Tok::UserVar(name)) = self.peek().cloned() else {
                        return Err(self.unexpected());
                    };
                    self.pos += 1;
                    self.expect_sym("=")?;
                    assignments.push((name, self.literal()?));
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                Ok(Statement::SetUserVars(assignments))
            }
            "SET" | "BEGIN" | "COMMIT" | "ROLLBACK" => {
                self.pos += 1;
                self.skip_rest();
                Ok(Statement::Noop)
            }
            "START" => {
                self.pos += 1;
                self.expect_kw("TRANSACTION")?;
                self.skip_rest();
                Ok(Statement::Noop)
            }
            "USE" => {
                self.pos += 1;
                self.object_name().map(Statement::Use)
            }
            "SHOW" => {
                self.pos += 1;
                self.show()
            }
            "DESC" | "DESCRIBE" => {
                self.pos += 1;
                let name = self.object_name()?;
                self.eat_kw("ALL");
                Ok(Statement::Describe(name))
            }
            "CREATE" => {
                self.pos += 1;
                self.create()
            }
            "DROP" => {
                self.pos += 1;
                self.drop()
            }
            "TRUNCATE" => {
                self.pos += 1;
                self.eat_kw("TABLE");
                let name = self.object_name()?;
                if self.is_kw("PARTITION") || self.is_kw("TEMPORARY") {
                    return Err(SqlError::unsupported("TRUNCATE TABLE ... PARTITION"));
                }
                Ok(Statement::Truncate(name))
            }
            "ALTER" => {
                self.pos += 1;
                self.alter()
            }
            "CANCEL" => {
                self.pos += 1;
                if !self.eat_kws(&["ALTER", "TABLE", "COLUMN", "FROM"]) {
                    return Err(SqlError::unsupported(format!(
                        "CANCEL {}",
                        self.rest_text()
                    )));
                }
                let name = self.object_name()?;
                Ok(Statement::CancelAlter(name))
            }
            _ => Err(SqlError::unsupported(format!("statement '{first}'"))),
        }
    }

    fn rest_text(&self) -> String {
        let start = self.start_of_current();
        let text = self.sql[start..].trim();
        let mut end = text.len().min(40);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_string()
    }

    // ---- SELECT ----

    fn select(&mut self) -> SqlResult<Select> {
        if self.is_kw("DISTINCT") {
            return Err(SqlError::unsupported("SELECT DISTINCT"));
        }
        self.eat_kw("ALL");
        let mut items = vec![self.select_item()?];
        while self.eat_sym(",") {
            items.push(self.select_item()?);
        }
        let mut from = None;
        if self.eat_kw("FROM") {
            if self.is_sym("(") {
                return Err(SqlError::unsupported("a subquery in FROM"));
            }
            from = Some(self.object_name()?);
            // Optional alias.
            if self.eat_kw("AS") {
                self.ident()?;
            } else if matches!(self.peek(), Some(Tok::Word(w)) if !is_clause_word(w))
                || matches!(self.peek(), Some(Tok::Quoted(_)))
            {
                self.pos += 1;
            }
            if self.is_sym(",") || CLAUSE_WORDS[11..].iter().any(|k| self.is_kw(k)) {
                return Err(SqlError::unsupported("JOIN"));
            }
        }
        let query = self.query_tail(true)?;
        Ok(Select { items, from, query })
    }

    /// `[WHERE ...] [GROUP BY col, ... (SELECT only)] [HAVING → unsupported] [ORDER BY ...]
    /// [LIMIT ...]`.
    fn query_tail(&mut self, allow_order: bool) -> SqlResult<Query> {
        let mut query = Query::default();
        if self.eat_kw("WHERE") {
            query.filter = self.conjunction()?;
        }
        if allow_order && self.eat_kws(&["GROUP", "BY"]) {
            loop {
                query.group_by.push(self.column_ref()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        if self.is_kw("GROUP") || self.is_kw("HAVING") {
            return Err(SqlError::unsupported("GROUP BY / HAVING"));
        }
        if allow_order && self.eat_kws(&["ORDER", "BY"]) {
            loop {
                let key = match self.peek() {
                    Some(Tok::Num(n)) => {
                        let position = n.parse::<usize>().map_err(|_| self.unexpected())?;
                        self.pos += 1;
                        OrderKey::Position(position)
                    }
                    _ => OrderKey::Column(self.column_ref()?),
                };
                let desc = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                if self.is_kw("NULLS") {
                    return Err(SqlError::unsupported("NULLS FIRST/LAST"));
                }
                query.order.push(OrderItem { key, desc });
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        if allow_order && self.eat_kw("LIMIT") {
            let first = self.unsigned()?;
            if self.eat_sym(",") {
                query.offset = first;
                query.limit = Some(self.unsigned()?);
            } else {
                query.limit = Some(first);
                if self.eat_kw("OFFSET") {
                    query.offset = self.unsigned()?;
                }
            }
        }
        if self.is_kw("UNION") {
            return Err(SqlError::unsupported("UNION"));
        }
        Ok(query)
    }

    fn select_item(&mut self) -> SqlResult<SelectItem> {
        if self.eat_sym("*") {
            return Ok(SelectItem::Star);
        }
        // `t.*` / `db.t.*`.
        let mut look = 0;
        while matches!(self.peek_at(look), Some(Tok::Word(_) | Tok::Quoted(_)))
            && matches!(self.peek_at(look + 1), Some(Tok::Sym(".")))
        {
            look += 2;
        }
        if look > 0 && matches!(self.peek_at(look), Some(Tok::Sym("*"))) {
            self.pos += look + 1;
            return Ok(SelectItem::Star);
        }
        let start = self.start_of_current();
        let expr = self.expr()?;
        let written = self.sql[start..self.end_of_previous()].to_string();
        let name = if self.eat_kw("AS") {
            match self.peek() {
                Some(Tok::Str(_)) => self.string()?,
                _ => self.ident()?,
            }
        } else {
            match self.peek() {
                Some(Tok::Word(w)) if !is_clause_word(w) => self.ident()?,
                Some(Tok::Quoted(_)) => self.ident()?,
                Some(Tok::Str(_)) => self.string()?,
                _ => match &expr {
                    // MySQL names a column after the column itself, not its qualification.
                    Expr::Column(c) => c.clone(),
                    _ => written,
                },
            }
        };
        Ok(SelectItem::Expr { expr, name })
    }

    fn expr(&mut self) -> SqlResult<Expr> {
        if self.is_literal_start() {
            return self.literal().map(Expr::Literal);
        }
        match self.peek().cloned() {
            Some(Tok::SysVar(v)) => {
                self.pos += 1;
                Ok(Expr::SysVar(v))
            }
            Some(Tok::UserVar(v)) => {
                self.pos += 1;
                Ok(Expr::UserVar(v))
            }
            Some(Tok::Word(w)) if matches!(self.peek_at(1), Some(Tok::Sym("("))) => {
                self.pos += 2;
                let name = w.to_ascii_lowercase();
                if self.eat_sym("*") {
                    self.expect_sym(")")?;
                    return Ok(Expr::Func {
                        name,
                        args: Vec::new(),
                        star: true,
                    });
                }
                let mut args = Vec::new();
                if !self.eat_sym(")") {
                    if self.is_kw("DISTINCT") {
                        return Err(SqlError::unsupported("DISTINCT in a function"));
                    }
                    args.push(self.expr()?);
                    while self.eat_sym(",") {
                        args.push(self.expr()?);
                    }
                    self.expect_sym(")")?;
                }
                Ok(Expr::Func {
                    name,
                    args,
                    star: false,
                })
            }
            Some(Tok::Word(w))
                if [
                    "CURRENT_USER",
                    "CURRENT_TIMESTAMP",
                    "CURRENT_DATE",
                    "LOCALTIME",
                    "LOCALTIMESTAMP",
                ]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                self.pos += 1;
                Ok(Expr::Func {
                    name: w.to_ascii_lowercase(),
                    args: Vec::new(),
                    star: false,
                })
            }
            Some(Tok::Word(_) | Tok::Quoted(_)) => self.column_ref().map(Expr::Column),
            Some(Tok::Sym("(")) => Err(SqlError::unsupported("a parenthesised expression")),
            _ => Err(self.unexpected()),
        }
    }

    /// `pred [AND pred]*`.
    fn conjunction(&mut self) -> SqlResult<Vec<Predicate>> {
        let mut out = Vec::new();
        loop {
            if self.eat_sym("(") {
                out.extend(self.conjunction()?);
                self.expect_sym(")")?;
            } else {
                out.push(self.predicate()?);
            }
            if self.is_kw("OR") {
                return Err(SqlError::unsupported(
                    "OR in WHERE (use AND of simple predicates)",
                ));
            }
            if !self.eat_kw("AND") {
                return Ok(out);
            }
        }
    }

    fn predicate(&mut self) -> SqlResult<Predicate> {
        if self.is_kw("NOT") {
            return Err(SqlError::unsupported("NOT in WHERE"));
        }
        // `literal op column`.
        if self.is_literal_start() {
            let value = self.literal()?;
            let op = self.cmp_op()?;
            let column = self.column_ref()?;
            return Ok(Predicate::Cmp {
                column,
                op: op.flipped(),
                value,
            });
        }
        if !matches!(self.peek(), Some(Tok::Word(_) | Tok::Quoted(_))) {
            return Err(self.unexpected());
        }
        if matches!(self.peek_at(1), Some(Tok::Sym("("))) {
            return Err(SqlError::unsupported("functions in WHERE"));
        }
        let column = self.column_ref()?;
        if self.eat_kw("IS") {
            let negated = self.eat_kw("NOT");
            self.expect_kw("NULL")?;
            return Ok(Predicate::IsNull { column, negated });
        }
        let negated = self.eat_kw("NOT");
        if self.eat_kw("IN") {
            self.expect_sym("(")?;
            let mut values = vec![self.literal()?];
            while self.eat_sym(",") {
                values.push(self.literal()?);
            }
            self.expect_sym(")")?;
            return Ok(Predicate::In {
                column,
                values,
                negated,
            });
        }
        if self.eat_kw("LIKE") {
            let pattern = self.string()?;
            return Ok(Predicate::Like {
                column,
                pattern,
                negated,
            });
        }
        if negated {
            return Err(self.unexpected());
        }
        let op = self.cmp_op()?;
        if matches!(self.peek(), Some(Tok::Word(w)) if !["NULL", "TRUE", "FALSE"].iter().any(|k| w.eq_ignore_ascii_case(k)))
            || matches!(self.peek(), Some(Tok::Quoted(_)))
        {
            return Err(SqlError::unsupported("comparing two columns"));
        }
        let value = self.literal()?;
        Ok(Predicate::Cmp { column, op, value })
    }

    fn cmp_op(&mut self) -> SqlResult<CmpOp> {
        match self.peek() {
            Some(Tok::Sym(s)) => match CmpOp::from_sym(s) {
                Some(op) => {
                    self.pos += 1;
                    Ok(op)
                }
                None => Err(self.unexpected()),
            },
            _ => Err(self.unexpected()),
        }
    }

    // ---- SHOW ----

    fn show(&mut self) -> SqlResult<Statement> {
        if self.eat_kw("DATABASES") || self.eat_kw("SCHEMAS") {
            let like = self.like()?;
            return Ok(Statement::ShowDatabases { like });
        }
        let full = self.eat_kw("FULL");
        if self.eat_kw("TABLES") {
            let db = if self.eat_kw("FROM") || self.eat_kw("IN") {
                Some(self.ident()?)
            } else {
                None
            };
            let like = self.like()?;
            return Ok(Statement::ShowTables { db, full, like });
        }
        if self.eat_kw("COLUMNS") || self.eat_kw("FIELDS") {
            if !(self.eat_kw("FROM") || self.eat_kw("IN")) {
                return Err(self.unexpected());
            }
            let mut name = self.object_name()?;
            if self.eat_kw("FROM") || self.eat_kw("IN") {
                name.db = Some(self.ident()?);
            }
            if self.is_kw("LIKE") || self.is_kw("WHERE") {
                return Err(SqlError::unsupported("SHOW COLUMNS ... LIKE/WHERE"));
            }
            return Ok(Statement::Describe(name));
        }
        if full {
            return Err(self.unexpected());
        }
        if self.eat_kws(&["CREATE", "TABLE"]) {
            return self.object_name().map(Statement::ShowCreateTable);
        }
        if self.eat_kws(&["CREATE", "DATABASE"]) || self.eat_kws(&["CREATE", "SCHEMA"]) {
            return self.ident().map(Statement::ShowCreateDatabase);
        }
        if self.eat_kws(&["ALTER", "TABLE"]) {
            if !self.eat_kw("COLUMN") {
                return Err(SqlError::unsupported(format!(
                    "SHOW ALTER TABLE {}",
                    self.rest_text()
                )));
            }
            let db = if self.eat_kw("FROM") || self.eat_kw("IN") {
                Some(self.ident()?)
            } else {
                None
            };
            let query = self.query_tail(true)?;
            return Ok(Statement::ShowAlter { db, query });
        }
        self.eat_kw("GLOBAL");
        self.eat_kw("SESSION");
        self.eat_kw("LOCAL");
        if self.eat_kw("VARIABLES") {
            let like = if self.eat_kw("LIKE") {
                Some(self.string()?)
            } else {
                None
            };
            let query = if like.is_none() {
                self.query_tail(false)?
            } else {
                Query::default()
            };
            return Ok(Statement::ShowVariables { like, query });
        }
        if self.eat_kw("WARNINGS") || self.eat_kw("ERRORS") {
            if self.eat_kw("LIMIT") {
                self.unsigned()?;
            }
            return Ok(Statement::ShowWarnings);
        }
        if self.eat_kw("BACKENDS") {
            return Ok(Statement::ShowBackends);
        }
        if self.eat_kw("FRONTENDS") {
            return Ok(Statement::ShowFrontends);
        }
        Err(SqlError::unsupported(format!("SHOW {}", self.rest_text())))
    }

    fn like(&mut self) -> SqlResult<Option<String>> {
        if self.eat_kw("LIKE") {
            return self.string().map(Some);
        }
        if self.is_kw("WHERE") {
            return Err(SqlError::unsupported("this SHOW with WHERE (use LIKE)"));
        }
        Ok(None)
    }

    // ---- DDL ----

    fn if_not_exists(&mut self) -> bool {
        self.eat_kws(&["IF", "NOT", "EXISTS"])
    }

    fn if_exists(&mut self) -> bool {
        self.eat_kws(&["IF", "EXISTS"])
    }

    fn create(&mut self) -> SqlResult<Statement> {
        if self.eat_kw("DATABASE") || self.eat_kw("SCHEMA") {
            let if_not_exists = self.if_not_exists();
            let name = self.db_name()?;
            if self.eat_kw("PROPERTIES") {
                self.properties_body()?;
            }
            return Ok(Statement::CreateDatabase {
                name,
                if_not_exists,
            });
        }
        if self.eat_kw("TABLE") {
            return self.create_table().map(Statement::CreateTable);
        }
        Err(SqlError::unsupported(format!(
            "CREATE {}",
            self.rest_text()
        )))
    }

    /// A database name, optionally `default_catalog.`-qualified.
    fn db_name(&mut self) -> SqlResult<String> {
        let name = self.object_name()?;
        match name.db {
            Some(catalog) if !catalog.eq_ignore_ascii_case("default_catalog") => {
                Err(SqlError::unsupported(format!("catalog '{catalog}'")))
            }
            _ => Ok(name.name),
        }
    }

    fn drop(&mut self) -> SqlResult<Statement> {
        if self.eat_kw("DATABASE") || self.eat_kw("SCHEMA") {
            let if_exists = self.if_exists();
            let name = self.db_name()?;
            self.eat_kw("FORCE");
            return Ok(Statement::DropDatabase { name, if_exists });
        }
        if self.eat_kw("TABLE") {
            let if_exists = self.if_exists();
            let name = self.object_name()?;
            self.eat_kw("FORCE");
            return Ok(Statement::DropTable { name, if_exists });
        }
        Err(SqlError::unsupported(format!("DROP {}", self.rest_text())))
    }

    fn create_table(&mut self) -> SqlResult<CreateTable> {
        let if_not_exists = self.if_not_exists();
        let name = self.object_name()?;
        if self.is_kw("AS") || self.is_kw("LIKE") {
            return Err(SqlError::unsupported("CREATE TABLE AS/LIKE"));
        }
        self.expect_sym("(")?;
        let mut columns = Vec::new();
        loop {
            if self.is_kw("INDEX") || self.is_kw("PRIMARY") || self.is_kw("KEY") {
                return Err(SqlError::unsupported(
                    "an index or key inside the column list (put PRIMARY KEY(...) after it)",
                ));
            }
            columns.push(self.column_spec()?);
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_sym(")")?;
        let mut table = CreateTable {
            if_not_exists,
            name,
            columns,
            primary_key: Vec::new(),
            distribution: Vec::new(),
            buckets: None,
            properties: Vec::new(),
            comment: None,
        };
        while !self.at_end() {
            if self.eat_kw("ENGINE") {
                self.eat_sym("=");
                let engine = self.ident()?;
                if !engine.eq_ignore_ascii_case("OLAP") {
                    return Err(SqlError::unsupported(format!("ENGINE={engine}")));
                }
            } else if self.eat_kws(&["PRIMARY", "KEY"]) {
                table.primary_key = self.ident_list()?;
            } else if ["DUPLICATE", "UNIQUE", "AGGREGATE"]
                .iter()
                .any(|k| self.is_kw(k))
                && self.is_kw_at(1, "KEY")
            {
                return Err(SqlError::unsupported(
                    "a table model other than PRIMARY KEY (the sim models Primary Key tables only)",
                ));
            } else if self.eat_kw("COMMENT") {
                table.comment = Some(self.string()?);
            } else if self.is_kw("PARTITION") {
                return Err(SqlError::unsupported("PARTITION BY"));
            } else if self.eat_kws(&["DISTRIBUTED", "BY"]) {
                if self.is_kw("RANDOM") {
                    return Err(SqlError::analysis("PRIMARY KEY must use hash distribution"));
                }
                self.expect_kw("HASH")?;
                table.distribution = self.ident_list()?;
                if self.eat_kw("BUCKETS") {
                    if self.eat_kw("AUTO") {
                        table.buckets = None;
                    } else {
                        table.buckets = Some(self.unsigned()?);
                    }
                }
            } else if self.is_kw("ORDER") && self.is_kw_at(1, "BY") {
                return Err(SqlError::unsupported("ORDER BY (sort keys)"));
            } else if self.eat_kw("PROPERTIES") {
                table.properties = self.properties_body()?;
            } else {
                return Err(self.unexpected());
            }
        }
        Ok(table)
    }

    /// `( "k" = "v", ... )`.
    fn properties_body(&mut self) -> SqlResult<Vec<(String, String)>> {
        self.expect_sym("(")?;
        let mut out = Vec::new();
        if self.eat_sym(")") {
            return Ok(out);
        }
        loop {
            let key = self.string()?;
            self.expect_sym("=")?;
            let value = match self.literal()? {
                Literal::Null => return Err(self.unexpected()),
                other => other.text().unwrap_or_default(),
            };
            out.push((key, value));
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_sym(")")?;
        Ok(out)
    }

    fn column_spec(&mut self) -> SqlResult<ColumnSpec> {
        let name = self.ident()?;
        let type_pos = self.start_of_current();
        if !matches!(self.peek(), Some(Tok::Word(_))) {
            return Err(self.unexpected());
        }
        self.pos += 1;
        // Parameters and element types: balance ( ) and < >.
        if self.is_sym("(") || self.is_sym("<") {
            let mut depth = 0i32;
            loop {
                match self.peek() {
                    Some(Tok::Sym("(" | "<")) => depth += 1,
                    Some(Tok::Sym(")" | ">")) => depth -= 1,
                    Some(_) => {}
                    None => return Err(self.unexpected()),
                }
                self.pos += 1;
                if depth <= 0 {
                    break;
                }
            }
        }
        let type_text = self.sql[type_pos..self.end_of_previous()].to_string();
        let mut spec = ColumnSpec {
            name,
            type_text,
            type_pos,
            nullable: None,
            default: None,
            comment: String::new(),
        };
        loop {
            if self.eat_kws(&["NOT", "NULL"]) {
                spec.nullable = Some(false);
            } else if self.eat_kw("NULL") {
                spec.nullable = Some(true);
            } else if self.eat_kw("DEFAULT") {
                if self.is_kw("CURRENT_TIMESTAMP") || self.is_sym("(") {
                    return Err(SqlError::unsupported("DEFAULT expressions"));
                }
                spec.default = self.literal()?.text();
            } else if self.eat_kw("COMMENT") {
                spec.comment = self.string()?;
            } else if self.is_kw("AUTO_INCREMENT") {
                return Err(SqlError::unsupported("AUTO_INCREMENT"));
            } else if self.is_kw("AS") {
                return Err(SqlError::unsupported("generated columns"));
            } else if [
                "KEY",
                "SUM",
                "MIN",
                "MAX",
                "REPLACE",
                "REPLACE_IF_NOT_NULL",
                "HLL_UNION",
                "BITMAP_UNION",
            ]
            .iter()
            .any(|k| self.is_kw(k))
            {
                return Err(SqlError::unsupported(
                    "column-level KEY or aggregate types (Primary Key tables only)",
                ));
            } else {
                return Ok(spec);
            }
        }
    }

    fn alter(&mut self) -> SqlResult<Statement> {
        if !self.eat_kw("TABLE") {
            return Err(SqlError::unsupported(format!("ALTER {}", self.rest_text())));
        }
        let table = self.object_name()?;
        let mut ops = Vec::new();
        let mut timeout = None;
        loop {
            if self.eat_kws(&["ADD", "COLUMN"]) {
                if self.eat_sym("(") {
                    loop {
                        let column = self.column_spec()?;
                        ops.push(AlterOp::Add {
                            column,
                            after: None,
                            first: false,
                        });
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.expect_sym(")")?;
                } else {
                    let column = self.column_spec()?;
                    let mut after = None;
                    let mut first = false;
                    if self.eat_kw("AFTER") {
                        after = Some(self.ident()?);
                    } else if self.eat_kw("FIRST") {
                        first = true;
                    }
                    ops.push(AlterOp::Add {
                        column,
                        after,
                        first,
                    });
                }
                if self.is_kw("TO") || self.is_kw("IN") {
                    return Err(SqlError::unsupported("rollup indexes"));
                }
            } else if self.eat_kws(&["MODIFY", "COLUMN"]) {
                ops.push(AlterOp::Modify(self.column_spec()?));
            } else if self.eat_kws(&["DROP", "COLUMN"]) {
                ops.push(AlterOp::Drop(self.ident()?));
                if self.is_kw("FROM") {
                    return Err(SqlError::unsupported("rollup indexes"));
                }
            } else {
                return Err(SqlError::unsupported(format!(
                    "ALTER TABLE ... {} (only ADD, MODIFY and DROP COLUMN are modelled)",
                    self.rest_text()
                )));
            }
            if self.eat_kw("PROPERTIES") {
                for (key, value) in self.properties_body()? {
                    if key.eq_ignore_ascii_case("timeout") {
                        timeout = Some(value.parse::<u64>().map_err(|_| {
                            SqlError::analysis(format!("Invalid timeout value: {value}"))
                        })?);
                    }
                }
            }
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(Statement::Alter {
            table,
            ops,
            timeout,
        })
    }
}

fn is_clause_word(word: &str) -> bool {
    CLAUSE_WORDS.iter().any(|k| word.eq_ignore_ascii_case(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_selects() {
        let Statement::Select(s) = parse(
            "select `id`, name AS n FROM `db`.`t` WHERE id >= 2 AND 'x' = name AND v IS NOT NULL ORDER BY id DESC, 2 LIMIT 1, 5;",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(s.items.len(), 2);
        assert_eq!(
            s.from,
            Some(ObjectName {
                db: Some("db".into()),
                name: "t".into()
            })
        );
        assert_eq!(s.query.filter.len(), 3);
        assert_eq!(s.query.offset, 1);
        assert_eq!(s.query.limit, Some(5));
        assert!(matches!(
            &s.items[1],
            SelectItem::Expr { name, .. } if name == "n"
        ));
        let Statement::Select(s) = parse("select current_version()").unwrap() else {
            panic!()
        };
        assert!(matches!(
            &s.items[0],
            SelectItem::Expr { name, .. } if name == "current_version()"
        ));
    }

    #[test]
    fn parses_ddl() {
        let Statement::CreateTable(t) = parse(
            "CREATE TABLE IF NOT EXISTS db.t (id BIGINT NOT NULL, a ARRAY<DECIMAL(10, 2)> NULL DEFAULT \"1\" COMMENT 'c') PRIMARY KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 4 PROPERTIES (\"replication_num\" = \"1\")",
        )
        .unwrap() else {
            panic!()
        };
        assert!(t.if_not_exists);
        assert_eq!(t.columns[1].type_text, "ARRAY<DECIMAL(10, 2)>");
        assert_eq!(t.columns[1].default.as_deref(), Some("1"));
        assert_eq!(t.buckets, Some(4));
        let Statement::Alter { ops, .. } =
            parse("ALTER TABLE t ADD COLUMN c INT NULL AFTER id, ADD COLUMN (d INT, e INT), DROP COLUMN f")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(ops.len(), 4);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            "",
            ";",
            "select",
            "select 1 1 1",
            "select * from",
            "select a from t where a = b",
            "create table t (",
            "create table t (a int",
            "alter table t add column",
            "show alter table column from",
            "select 1; select 2",
            "ALTER TABLE t ADD COLUMN c ARRAY<INT",
            "select -",
            "select a from t where (a = 1",
            "select a from t order by",
            "select a from t limit -1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
