//! Table names: validated once, at construction, and only then written into SQL text.

use sessionkit_core::Error;
use std::fmt;

/// The longest name part accepted: the index names `<table>_expires_at_idx` (63 bytes at
/// most) and `<table>_user_id_idx` (60) must still fit in PostgreSQL's 63-byte identifier
/// limit (MySQL allows 64).
pub const MAX_NAME_LEN: usize = 48;

/// A table name that is safe to write into SQL: `table` or `schema.table`, each part made of
/// ASCII letters, digits and `_`, not starting with a digit, 1 to [`MAX_NAME_LEN`] long.
#[derive(Clone, PartialEq, Eq)]
pub struct TableName {
    schema: Option<String>,
    name: String,
}

impl TableName {
    /// Validate `raw` as a table name; anything else is [`Error::Config`].
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let (schema, name) = match raw.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, raw),
        };
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= MAX_NAME_LEN
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !part.as_bytes()[0].is_ascii_digit()
        };
        if schema.is_some_and(|s| !valid(s)) || !valid(name) {
            let mut shown: String = raw.chars().take(80).collect();
            if shown.len() < raw.len() {
                shown.push('…');
            }
            return Err(Error::Config(format!(
                "sessionkit-sql: {shown:?} is not a usable table name: use `name` or \
                 `schema.name`, each part 1 to {MAX_NAME_LEN} ASCII letters, digits or `_`, \
                 not starting with a digit"
            )));
        }
        Ok(TableName {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// The table's own name, without the schema.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the index on `expires_at`: `<name>_expires_at_idx`, unquoted.
    pub fn index_name(&self) -> String {
        format!("{}_expires_at_idx", self.name)
    }

    /// The name of the index on `user_id`: `<name>_user_id_idx`, unquoted.
    pub fn user_index_name(&self) -> String {
        format!("{}_user_id_idx", self.name)
    }

    /// The (schema-qualified) name, each part in `quote` characters (`"` or `` ` ``). Safe
    /// because the parts were checked to hold no quote characters.
    pub fn quoted(&self, quote: char) -> String {
        match &self.schema {
            Some(schema) => format!("{quote}{schema}{quote}.{quote}{}{quote}", self.name),
            None => format!("{quote}{}{quote}", self.name),
        }
    }

    /// The index name, qualified by the schema as SQLite wants it in `CREATE INDEX`.
    pub fn quoted_index_in_schema(&self, quote: char) -> String {
        self.in_schema(quote, &self.index_name())
    }

    /// The name of the index on `user_id`, qualified like
    /// [`quoted_index_in_schema`](Self::quoted_index_in_schema).
    pub fn quoted_user_index_in_schema(&self, quote: char) -> String {
        self.in_schema(quote, &self.user_index_name())
    }

    /// `object` (a name made here from the checked table name), in the table's schema.
    fn in_schema(&self, quote: char, object: &str) -> String {
        match &self.schema {
            Some(schema) => format!("{quote}{schema}{quote}.{quote}{object}{quote}"),
            None => format!("{quote}{object}{quote}"),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_schema_names_are_accepted_and_quoted() {
        let t = TableName::parse("sessions").unwrap();
        assert_eq!(t.quoted('"'), "\"sessions\"");
        assert_eq!(t.index_name(), "sessions_expires_at_idx");
        assert_eq!(t.user_index_name(), "sessions_user_id_idx");
        let t = TableName::parse("app.Web_Sessions2").unwrap();
        assert_eq!(t.quoted('`'), "`app`.`Web_Sessions2`");
        assert_eq!(t.to_string(), "app.Web_Sessions2");
        assert_eq!(
            t.quoted_index_in_schema('"'),
            "\"app\".\"Web_Sessions2_expires_at_idx\""
        );
        assert_eq!(
            t.quoted_user_index_in_schema('"'),
            "\"app\".\"Web_Sessions2_user_id_idx\""
        );
        let longest = "a".repeat(MAX_NAME_LEN);
        let t = TableName::parse(&longest).unwrap();
        // PostgreSQL truncates identifiers over 63 bytes: both index names must fit.
        assert!(t.index_name().len() <= 63 && t.user_index_name().len() <= 63);
        assert!(TableName::parse(&format!("{longest}_expires_at_idx")).is_err());
    }

    #[test]
    fn anything_else_is_a_config_error() {
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a.b.c",
            "sessions; DROP TABLE x",
            "\"sessions\"",
            "`sessions`",
            "'sessions'",
            "ses sions",
            "1sessions",
            "sessions--",
            "sessi\0ns",
            "séssions",
            "sessions\n",
            &"a".repeat(MAX_NAME_LEN + 1),
        ] {
            match TableName::parse(bad) {
                Err(Error::Config(message)) => {
                    assert!(message.contains("table name"), "{message}")
                }
                other => panic!("{bad:?} was accepted: {other:?}"),
            }
        }
    }
}
