//! What coercion knows about a target column: its type, nullability and
//! limits, read from the catalog.

/// The PostgreSQL column types sluice can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Int2,
    Int4,
    Int8,
    Numeric,
    Float4,
    Float8,
    Bool,
    /// text, varchar, bpchar and name.
    Text,
    Json,
    Jsonb,
    Timestamptz,
    Timestamp,
    Date,
    Uuid,
    Bytea,
}

impl ColType {
    /// The type for a `pg_type` oid, or `None` when sluice cannot write it.
    pub fn from_oid(oid: u32) -> Option<ColType> {
        Some(match oid {
            21 => ColType::Int2,
            23 => ColType::Int4,
            20 => ColType::Int8,
            1700 => ColType::Numeric,
            700 => ColType::Float4,
            701 => ColType::Float8,
            16 => ColType::Bool,
            25 | 1043 | 1042 | 19 => ColType::Text,
            114 => ColType::Json,
            3802 => ColType::Jsonb,
            1184 => ColType::Timestamptz,
            1114 => ColType::Timestamp,
            1082 => ColType::Date,
            2950 => ColType::Uuid,
            17 => ColType::Bytea,
            _ => return None,
        })
    }

    /// The name Postgres shows for the type, for messages.
    pub fn pg_name(self) -> &'static str {
        match self {
            ColType::Int2 => "smallint",
            ColType::Int4 => "integer",
            ColType::Int8 => "bigint",
            ColType::Numeric => "numeric",
            ColType::Float4 => "real",
            ColType::Float8 => "double precision",
            ColType::Bool => "boolean",
            ColType::Text => "text",
            ColType::Json => "json",
            ColType::Jsonb => "jsonb",
            ColType::Timestamptz => "timestamp with time zone",
            ColType::Timestamp => "timestamp without time zone",
            ColType::Date => "date",
            ColType::Uuid => "uuid",
            ColType::Bytea => "bytea",
        }
    }
}

/// What sluice knows about one target column (read from pg_attribute at start-up).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    /// How values for the column are encoded.
    pub ctype: ColType,
    /// Whether a null or missing value is an error rather than NULL.
    pub not_null: bool,
    /// varchar(n)/char(n) limit in characters
    pub max_chars: Option<usize>,
    /// `name`: 63 bytes. Its binary input refuses more with 42622, which
    /// is not a data error and would stop the partition, so coercion
    /// refuses it first (the record is dead-lettered).
    pub max_bytes: Option<usize>,
    /// numeric(p,s)
    pub numeric: Option<(u32, u32)>,
}

impl ColumnSpec {
    /// A nullable column of `ctype` with no length or precision limit.
    pub fn of(ctype: ColType) -> ColumnSpec {
        ColumnSpec {
            ctype,
            not_null: false,
            max_chars: None,
            max_bytes: None,
            numeric: None,
        }
    }

    /// Builds the spec from `pg_attribute.atttypid`, `atttypmod` and
    /// `attnotnull`; `None` when the type is not one sluice can write.
    pub fn from_catalog(type_oid: u32, typmod: i32, not_null: bool) -> Option<ColumnSpec> {
        let ctype = ColType::from_oid(type_oid)?;
        let mut spec = ColumnSpec {
            not_null,
            ..ColumnSpec::of(ctype)
        };
        if typmod >= 4 {
            let m = typmod - 4;
            match type_oid {
                1043 | 1042 => spec.max_chars = Some(m as usize),
                1700 => {
                    // Postgres 15 packs a signed 11-bit scale; a negative one
                    // cannot be expressed here, so Postgres keeps that check.
                    let scale = ((m & 0x7ff) ^ 0x400) - 0x400;
                    if scale >= 0 {
                        spec.numeric = Some(((m >> 16) as u32 & 0xffff, scale as u32));
                    }
                }
                _ => {}
            }
        }
        if type_oid == 19 {
            spec.max_bytes = Some(63);
        }
        Some(spec)
    }
}
