//! [`Ts`]: a point in time as the stores keep it. SQLite holds it as fixed-width
//! RFC 3339 text with microseconds (text order is time order, and the rows written
//! before this type existed read back unchanged); PostgreSQL as `timestamptz`. One
//! SQL text compares and orders times correctly in both.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ts(pub DateTime<Utc>);

impl Ts {
    /// The SQLite text form (also the form audit records hash).
    pub fn text(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

impl From<DateTime<Utc>> for Ts {
    fn from(t: DateTime<Utc>) -> Ts {
        Ts(t)
    }
}

impl From<Ts> for DateTime<Utc> {
    fn from(t: Ts) -> DateTime<Utc> {
        t.0
    }
}

impl Type<Sqlite> for Ts {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Ts {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(self.text(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let s = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(Ts(DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("bad stored time '{s}': {e}"))?
            .with_timezone(&Utc)))
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Postgres>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Ts(<DateTime<Utc> as Decode<Postgres>>::decode(value)?))
    }
}

impl rusqlite::types::ToSql for Ts {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.text()))
    }
}

impl rusqlite::types::FromSql for Ts {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = value.as_str()?;
        DateTime::parse_from_rfc3339(s)
            .map(|t| Ts(t.with_timezone(&Utc)))
            .map_err(|e| {
                rusqlite::types::FromSqlError::Other(format!("bad stored time '{s}': {e}").into())
            })
    }
}
