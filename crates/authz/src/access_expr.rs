//! The access expression language of route rules (seed 003's "User Group Permission" column):
//! `true`, `false`, `groups.admin`, `"admin" in groups`, `["a", "b"] in groups` (any of them),
//! `permissions["x"]`, `clientType == "cms"` / `!=`, combined with `&&`, `||`, `!` and
//! parentheses. Parsed once at load; a parse error names the column where it went wrong.

use std::fmt;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessExpr {
    /// `true` / `false`.
    Const(bool),
    /// `groups.x` or `"x" in groups`.
    InGroup(String),
    /// `["a", "b"] in groups`: any of them.
    AnyGroup(Vec<String>),
    /// `permissions["x"]`.
    Permission(String),
    /// `clientType == "x"` (or `!=` with `negated`).
    ClientType {
        /// The client type compared with.
        value: String,
        /// `!=` instead of `==`.
        negated: bool,
    },
    /// `!e`.
    Not(Box<AccessExpr>),
    /// `a && b`.
    And(Box<AccessExpr>, Box<AccessExpr>),
    /// `a || b`.
    Or(Box<AccessExpr>, Box<AccessExpr>),
}

/// A parse error at a 1-based column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ExprError {
    /// Where (1-based, in characters).
    pub column: usize,
    /// What was expected or found.
    pub message: String,
}

/// What an expression is evaluated against.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessContext<'a> {
    /// The caller's groups.
    pub groups: &'a [String],
    /// The caller's permissions.
    pub permissions: &'a [String],
    /// The client type of the request (`client-type` header), if any.
    pub client_type: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Dot,
    LBracket,
    RBracket,
    Comma,
    LParen,
    RParen,
    And,
    Or,
    Not,
    Eq,
    Ne,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "'{s}'"),
            Tok::Str(s) => write!(f, "\"{s}\""),
            Tok::Dot => f.write_str("'.'"),
            Tok::LBracket => f.write_str("'['"),
            Tok::RBracket => f.write_str("']'"),
            Tok::Comma => f.write_str("','"),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::And => f.write_str("'&&'"),
            Tok::Or => f.write_str("'||'"),
            Tok::Not => f.write_str("'!'"),
            Tok::Eq => f.write_str("'=='"),
            Tok::Ne => f.write_str("'!='"),
        }
    }
}

fn err<T>(column: usize, message: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError {
        column,
        message: message.into(),
    })
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '.' | '[' | ']' | ',' | '(' | ')' => {
                let tok = match c {
                    '.' => Tok::Dot,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    ',' => Tok::Comma,
                    '(' => Tok::LParen,
                    _ => Tok::RParen,
                };
                out.push((tok, col));
                i += 1;
            }
            '&' | '|' | '=' => {
                if chars.get(i + 1) != Some(&c) {
                    return err(col, format!("'{c}' must be doubled ('{c}{c}')"));
                }
                out.push((
                    match c {
                        '&' => Tok::And,
                        '|' => Tok::Or,
                        _ => Tok::Eq,
                    },
                    col,
                ));
                i += 2;
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push((Tok::Ne, col));
                    i += 2;
                } else {
                    out.push((Tok::Not, col));
                    i += 1;
                }
            }
            '"' | '\'' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return err(col, "unterminated string"),
                        Some(&q) if q == c => break,
                        Some('\\') if chars.get(j + 1).is_some() => {
                            s.push(chars[j + 1]);
                            j += 2;
                        }
                        Some(&other) => {
                            s.push(other);
                            j += 1;
                        }
                    }
                }
                out.push((Tok::Str(s), col));
                i = j + 1;
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '-')
                {
                    i += 1;
                }
                out.push((Tok::Ident(chars[start..i].iter().collect()), col));
            }
            other => return err(col, format!("unexpected character '{other}'")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(t, _)| t)
    }

    fn column(&self) -> usize {
        self.toks.get(self.at).map_or(self.end, |(_, c)| *c)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).map(|(t, _)| t.clone());
        self.at += 1;
        t
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<(), ExprError> {
        let column = self.column();
        match self.next() {
            Some(t) if &t == want => Ok(()),
            Some(t) => err(column, format!("expected {what}, found {t}")),
            None => err(column, format!("expected {what}, found the end")),
        }
    }

    fn or(&mut self) -> Result<AccessExpr, ExprError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.next();
            left = AccessExpr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<AccessExpr, ExprError> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.next();
            left = AccessExpr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<AccessExpr, ExprError> {
        if self.peek() == Some(&Tok::Not) {
            self.next();
            return Ok(AccessExpr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn in_groups(&mut self) -> Result<(), ExprError> {
        let column = self.column();
        match self.next() {
            Some(Tok::Ident(kw)) if kw == "in" => {}
            Some(t) => return err(column, format!("expected 'in groups', found {t}")),
            None => return err(column, "expected 'in groups', found the end"),
        }
        let column = self.column();
        match self.next() {
            Some(Tok::Ident(g)) if g == "groups" => Ok(()),
            Some(t) => err(column, format!("expected 'groups', found {t}")),
            None => err(column, "expected 'groups', found the end"),
        }
    }

    fn primary(&mut self) -> Result<AccessExpr, ExprError> {
        let column = self.column();
        match self.next() {
            Some(Tok::LParen) => {
                let inner = self.or()?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(inner)
            }
            Some(Tok::Ident(word)) => match word.as_str() {
                "true" => Ok(AccessExpr::Const(true)),
                "false" => Ok(AccessExpr::Const(false)),
                "groups" => {
                    self.expect(&Tok::Dot, "'.' and a group name after 'groups'")?;
                    let column = self.column();
                    match self.next() {
                        Some(Tok::Ident(name)) => Ok(AccessExpr::InGroup(name)),
                        Some(t) => err(column, format!("expected a group name, found {t}")),
                        None => err(column, "expected a group name, found the end"),
                    }
                }
                "permissions" => {
                    self.expect(&Tok::LBracket, "'[' after 'permissions'")?;
                    let column = self.column();
                    let name = match self.next() {
                        Some(Tok::Str(s)) => s,
                        Some(t) => {
                            return err(
                                column,
                                format!("expected a permission in quotes, found {t}"),
                            );
                        }
                        None => {
                            return err(column, "expected a permission in quotes, found the end");
                        }
                    };
                    self.expect(&Tok::RBracket, "']'")?;
                    Ok(AccessExpr::Permission(name))
                }
                "clientType" => {
                    let column = self.column();
                    let negated = match self.next() {
                        Some(Tok::Eq) => false,
                        Some(Tok::Ne) => true,
                        Some(t) => {
                            return err(
                                column,
                                format!("expected '==' or '!=' after 'clientType', found {t}"),
                            );
                        }
                        None => {
                            return err(
                                column,
                                "expected '==' or '!=' after 'clientType', found the end",
                            );
                        }
                    };
                    let column = self.column();
                    match self.next() {
                        Some(Tok::Str(value)) => Ok(AccessExpr::ClientType { value, negated }),
                        Some(t) => err(
                            column,
                            format!("expected a client type in quotes, found {t}"),
                        ),
                        None => err(column, "expected a client type in quotes, found the end"),
                    }
                }
                other => err(
                    column,
                    format!(
                        "unknown name '{other}': expected true, false, groups, permissions or clientType"
                    ),
                ),
            },
            Some(Tok::Str(group)) => {
                self.in_groups()?;
                Ok(AccessExpr::InGroup(group))
            }
            Some(Tok::LBracket) => {
                let mut names = Vec::new();
                loop {
                    let column = self.column();
                    match self.next() {
                        Some(Tok::Str(s)) => names.push(s),
                        Some(Tok::RBracket) if names.is_empty() => {
                            return err(column, "the list of groups is empty");
                        }
                        Some(t) => {
                            return err(
                                column,
                                format!("expected a group name in quotes, found {t}"),
                            );
                        }
                        None => {
                            return err(column, "expected a group name in quotes, found the end");
                        }
                    }
                    let column = self.column();
                    match self.next() {
                        Some(Tok::Comma) => continue,
                        Some(Tok::RBracket) => break,
                        Some(t) => return err(column, format!("expected ',' or ']', found {t}")),
                        None => return err(column, "expected ',' or ']', found the end"),
                    }
                }
                self.in_groups()?;
                Ok(AccessExpr::AnyGroup(names))
            }
            Some(t) => err(column, format!("expected an expression, found {t}")),
            None => err(column, "expected an expression, found the end"),
        }
    }
}

impl AccessExpr {
    /// Parses an expression.
    pub fn parse(text: &str) -> Result<Self, ExprError> {
        let toks = lex(text)?;
        let end = text.chars().count() + 1;
        let mut p = Parser { toks, at: 0, end };
        let expr = p.or()?;
        if let Some(t) = p.peek().cloned() {
            return err(
                p.column(),
                format!("unexpected {t} after a complete expression"),
            );
        }
        Ok(expr)
    }

    /// Whether the expression compares the request's client type (so the request's headers
    /// matter to the decision, not only the caller).
    pub fn reads_client_type(&self) -> bool {
        match self {
            Self::ClientType { .. } => true,
            Self::Const(_) | Self::InGroup(_) | Self::AnyGroup(_) | Self::Permission(_) => false,
            Self::Not(e) => e.reads_client_type(),
            Self::And(a, b) | Self::Or(a, b) => a.reads_client_type() || b.reads_client_type(),
        }
    }

    /// Evaluates the expression for a caller.
    pub fn allows(&self, ctx: &AccessContext<'_>) -> bool {
        match self {
            Self::Const(b) => *b,
            Self::InGroup(g) => ctx.groups.iter().any(|x| x == g),
            Self::AnyGroup(list) => list.iter().any(|g| ctx.groups.iter().any(|x| x == g)),
            Self::Permission(p) => ctx.permissions.iter().any(|x| x == p),
            Self::ClientType { value, negated } => {
                (ctx.client_type == Some(value.as_str())) != *negated
            }
            Self::Not(e) => !e.allows(ctx),
            Self::And(a, b) => a.allows(ctx) && b.allows(ctx),
            Self::Or(a, b) => a.allows(ctx) || b.allows(ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_type_is_found_anywhere_in_an_expression() {
        for (text, reads) in [
            ("groups.admin", false),
            ("true || permissions[\"x\"]", false),
            ("clientType == \"cms\"", true),
            ("groups.a && !(clientType != \"cms\")", true),
            ("groups.a || (groups.b && clientType == \"x\")", true),
        ] {
            assert_eq!(
                AccessExpr::parse(text).unwrap().reads_client_type(),
                reads,
                "{text}"
            );
        }
    }

    #[test]
    fn evaluation_table() {
        let groups = vec!["admin".to_string(), "dev-team".to_string()];
        let permissions = vec!["console.view".to_string()];
        let ctx = AccessContext {
            groups: &groups,
            permissions: &permissions,
            client_type: Some("cms"),
        };
        let table = [
            ("true", true),
            ("false", false),
            ("groups.admin", true),
            ("groups.ops", false),
            ("groups.dev-team", true),
            ("\"admin\" in groups", true),
            ("'ops' in groups", false),
            ("[\"ops\", \"admin\"] in groups", true),
            ("[\"ops\", \"qa\"] in groups", false),
            ("permissions[\"console.view\"]", true),
            ("permissions[\"console.edit\"]", false),
            ("clientType == \"cms\"", true),
            ("clientType != \"cms\"", false),
            ("!groups.ops", true),
            ("!!groups.admin", true),
            ("groups.ops || groups.admin", true),
            ("groups.ops && groups.admin", false),
            (
                "groups.admin && (groups.ops || permissions[\"console.view\"])",
                true,
            ),
            ("groups.ops || groups.admin && false", false),
            ("(groups.ops || groups.admin) && !false", true),
            ("true || false && false", true),
        ];
        for (text, want) in table {
            let e = AccessExpr::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(e.allows(&ctx), want, "{text}");
        }
        let nobody = AccessContext::default();
        assert!(!AccessExpr::parse("groups.admin").unwrap().allows(&nobody));
        assert!(
            AccessExpr::parse("clientType != \"cms\"")
                .unwrap()
                .allows(&nobody),
            "no client type differs from any"
        );
    }

    #[test]
    fn parse_errors_give_the_column() {
        let table = [
            ("", 1, "expected an expression, found the end"),
            ("groups.", 8, "expected a group name, found the end"),
            (
                "groups admin",
                8,
                "expected '.' and a group name after 'groups', found 'admin'",
            ),
            ("groups.admin &", 14, "'&' must be doubled"),
            (
                "groups.admin and groups.ops",
                14,
                "unexpected 'and' after a complete expression",
            ),
            ("(groups.admin", 14, "expected ')', found the end"),
            (
                "\"admin\" groups",
                9,
                "expected 'in groups', found 'groups'",
            ),
            ("\"admin\" in users", 12, "expected 'groups', found 'users'"),
            ("[] in groups", 2, "the list of groups is empty"),
            (
                "[\"a\" \"b\"] in groups",
                6,
                "expected ',' or ']', found \"b\"",
            ),
            (
                "permissions[x]",
                13,
                "expected a permission in quotes, found 'x'",
            ),
            ("clientType = \"cms\"", 12, "'=' must be doubled"),
            (
                "clientType \"cms\"",
                12,
                "expected '==' or '!=' after 'clientType', found \"cms\"",
            ),
            ("roles.admin", 1, "unknown name 'roles'"),
            ("groups.admin $", 14, "unexpected character '$'"),
            ("\"admin", 1, "unterminated string"),
        ];
        for (text, column, message) in table {
            let e = AccessExpr::parse(text).unwrap_err();
            assert_eq!(e.column, column, "{text}: {e}");
            assert!(e.message.starts_with(message), "{text}: {e}");
        }
    }
}
