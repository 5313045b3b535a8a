//! Typed views of the Parquet columns the reader takes, and the column types it accepts.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{
    Array, ArrayRef, Int16Array, Int32Array, Int64Array, Int8Array, LargeStringArray, StringArray,
    StringViewArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use arrow_schema::{DataType, TimeUnit};
use serde_json::Value;
use std::sync::Arc;
use topsellers_model::{format_rfc3339_ms, validate_category, RecordError};

/// Whether `dt` is a string type, or a dictionary of one.
pub(crate) fn is_text(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => {
            matches!(
                **values,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        }
        _ => false,
    }
}

/// Whether `dt` is an integer type.
pub(crate) fn is_int(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

/// Whether `dt` can be an event time: a timestamp, integer epoch ms, or text.
pub(crate) fn is_time(dt: &DataType) -> bool {
    matches!(dt, DataType::Timestamp(_, _)) || is_int(dt) || is_text(dt)
}

/// An integer column of any width and sign.
pub(crate) enum IntCol {
    I8(Int8Array),
    I16(Int16Array),
    I32(Int32Array),
    I64(Int64Array),
    U8(UInt8Array),
    U16(UInt16Array),
    U32(UInt32Array),
    U64(UInt64Array),
}

macro_rules! int_get {
    ($self:ident, $row:ident, $($variant:ident),*) => {
        match $self {
            $(IntCol::$variant(a) => {
                if a.is_null($row) { None } else { Some(i128::from(a.value($row))) }
            })*
        }
    };
}

impl IntCol {
    pub(crate) fn new(array: &ArrayRef) -> Option<IntCol> {
        Some(match array.data_type() {
            DataType::Int8 => IntCol::I8(array.as_primitive_opt::<Int8Type>()?.clone()),
            DataType::Int16 => IntCol::I16(array.as_primitive_opt::<Int16Type>()?.clone()),
            DataType::Int32 => IntCol::I32(array.as_primitive_opt::<Int32Type>()?.clone()),
            DataType::Int64 => IntCol::I64(array.as_primitive_opt::<Int64Type>()?.clone()),
            DataType::UInt8 => IntCol::U8(array.as_primitive_opt::<UInt8Type>()?.clone()),
            DataType::UInt16 => IntCol::U16(array.as_primitive_opt::<UInt16Type>()?.clone()),
            DataType::UInt32 => IntCol::U32(array.as_primitive_opt::<UInt32Type>()?.clone()),
            DataType::UInt64 => IntCol::U64(array.as_primitive_opt::<UInt64Type>()?.clone()),
            _ => return None,
        })
    }

    /// The value at `row`, `None` if null.
    pub(crate) fn get(&self, row: usize) -> Option<i128> {
        int_get!(self, row, I8, I16, I32, I64, U8, U16, U32, U64)
    }
}

/// A string column, plain or dictionary-encoded.
pub(crate) enum TextCol {
    Utf8(StringArray),
    /// The common dictionary (how categories are read: see `parquet::category_as_dictionary`),
    /// taken apart so a row costs an index, not a dynamic call.
    DictUtf8 {
        keys: Int32Array,
        values: StringArray,
    },
    Large(LargeStringArray),
    View(StringViewArray),
    Dict {
        keys: Vec<usize>,
        array: ArrayRef,
        values: Box<TextCol>,
    },
}

impl TextCol {
    pub(crate) fn new(array: &ArrayRef) -> Option<TextCol> {
        Some(match array.data_type() {
            DataType::Utf8 => TextCol::Utf8(array.as_string_opt::<i32>()?.clone()),
            DataType::LargeUtf8 => TextCol::Large(array.as_string_opt::<i64>()?.clone()),
            DataType::Utf8View => TextCol::View(array.as_string_view_opt()?.clone()),
            DataType::Dictionary(key, value)
                if **key == DataType::Int32 && **value == DataType::Utf8 =>
            {
                let dict = array.as_dictionary_opt::<Int32Type>()?;
                TextCol::DictUtf8 {
                    keys: dict.keys().clone(),
                    values: dict.values().as_string_opt::<i32>()?.clone(),
                }
            }
            DataType::Dictionary(_, _) => {
                let dict = array.as_any_dictionary_opt()?;
                let values = TextCol::new(dict.values())?;
                if matches!(values, TextCol::Dict { .. }) {
                    return None;
                }
                TextCol::Dict {
                    keys: dict.normalized_keys(),
                    array: array.clone(),
                    values: Box::new(values),
                }
            }
            _ => return None,
        })
    }

    /// For the common dictionary: the text at `row` and its index among the dictionary's
    /// values (`None` if null, or for other encodings).
    pub(crate) fn get_keyed(&self, row: usize) -> Option<(usize, &str)> {
        let TextCol::DictUtf8 { keys, values } = self else {
            return None;
        };
        if keys.is_null(row) {
            return None;
        }
        let at = usize::try_from(keys.value(row)).ok()?;
        (at < values.len() && !values.is_null(at)).then(|| (at, values.value(at)))
    }

    /// The text at `row`, `None` if null.
    pub(crate) fn get(&self, row: usize) -> Option<&str> {
        match self {
            TextCol::Utf8(a) => (!a.is_null(row)).then(|| a.value(row)),
            TextCol::DictUtf8 { .. } => self.get_keyed(row).map(|(_, text)| text),
            TextCol::Large(a) => (!a.is_null(row)).then(|| a.value(row)),
            TextCol::View(a) => (!a.is_null(row)).then(|| a.value(row)),
            TextCol::Dict {
                keys,
                array,
                values,
            } => {
                if array.is_null(row) {
                    return None;
                }
                values.get(*keys.get(row)?)
            }
        }
    }
}

/// The `item_id` column: text or integers (kept as decimal text).
pub(crate) enum ItemCol {
    Text(TextCol),
    Int(IntCol),
}

impl ItemCol {
    pub(crate) fn new(array: &ArrayRef) -> Option<ItemCol> {
        TextCol::new(array)
            .map(ItemCol::Text)
            .or_else(|| IntCol::new(array).map(ItemCol::Int))
    }
}

/// The `ts` column: a timestamp of any unit and zone, integer epoch ms, or text.
pub(crate) enum TsCol {
    Timestamp(Int64Array, TimeUnit),
    Int(IntCol),
    Text(TextCol),
}

impl TsCol {
    pub(crate) fn new(array: &ArrayRef) -> Option<TsCol> {
        if let DataType::Timestamp(unit, _) = array.data_type() {
            let (values, nulls) = match unit {
                TimeUnit::Second => {
                    let a = array.as_primitive_opt::<TimestampSecondType>()?;
                    (a.values().clone(), a.nulls().cloned())
                }
                TimeUnit::Millisecond => {
                    let a = array.as_primitive_opt::<TimestampMillisecondType>()?;
                    (a.values().clone(), a.nulls().cloned())
                }
                TimeUnit::Microsecond => {
                    let a = array.as_primitive_opt::<TimestampMicrosecondType>()?;
                    (a.values().clone(), a.nulls().cloned())
                }
                TimeUnit::Nanosecond => {
                    let a = array.as_primitive_opt::<TimestampNanosecondType>()?;
                    (a.values().clone(), a.nulls().cloned())
                }
            };
            return Some(TsCol::Timestamp(Int64Array::new(values, nulls), *unit));
        }
        IntCol::new(array)
            .map(TsCol::Int)
            .or_else(|| TextCol::new(array).map(TsCol::Text))
    }

    /// Event time in epoch ms at `row` (timestamps floored to the millisecond).
    pub(crate) fn get(&self, row: usize) -> Result<i64, RecordError> {
        let missing = RecordError::MissingField("ts");
        match self {
            TsCol::Timestamp(a, unit) => {
                if a.is_null(row) {
                    return Err(missing);
                }
                let v = a.value(row);
                match unit {
                    TimeUnit::Second => v
                        .checked_mul(1000)
                        .ok_or_else(|| RecordError::BadTimestamp(format!("{v}s"))),
                    TimeUnit::Millisecond => Ok(v),
                    TimeUnit::Microsecond => Ok(v.div_euclid(1000)),
                    TimeUnit::Nanosecond => Ok(v.div_euclid(1_000_000)),
                }
            }
            TsCol::Int(c) => {
                let v = c.get(row).ok_or(missing)?;
                i64::try_from(v).map_err(|_| RecordError::BadTimestamp(v.to_string()))
            }
            TsCol::Text(c) => super::fields::ts_from_text(c.get(row).ok_or(missing)?),
        }
    }

    fn render(&self, row: usize) -> Value {
        match self {
            TsCol::Timestamp(..) => match self.get(row) {
                Ok(ms) => Value::String(format_rfc3339_ms(ms)),
                Err(_) => Value::Null,
            },
            TsCol::Int(c) => int_value(c.get(row)),
            TsCol::Text(c) => text_value(c.get(row)),
        }
    }
}

fn int_value(v: Option<i128>) -> Value {
    match v {
        None => Value::Null,
        Some(v) => match (i64::try_from(v), u64::try_from(v)) {
            (Ok(i), _) => Value::from(i),
            (_, Ok(u)) => Value::from(u),
            _ => Value::String(v.to_string()),
        },
    }
}

fn text_value(v: Option<&str>) -> Value {
    v.map_or(Value::Null, |s| Value::String(s.to_owned()))
}

/// The columns of one record batch.
pub(crate) struct BatchColumns {
    pub item_id: ItemCol,
    /// `None`: the file has no category column (a `category=` partition supplies it).
    pub category: Option<TextCol>,
    /// For a category read as the common dictionary: what is wrong with each of its values
    /// (checked once per value, not per row).
    pub category_checks: Option<CategoryChecks>,
    pub ts: TsCol,
    pub quantity: Option<IntCol>,
}

/// The data-contract check of each value of a category dictionary.
#[derive(Clone)]
pub(crate) struct CategoryChecks {
    /// The dictionary's values: kept, so that the next batch can tell whether it shares them.
    pub values: ArrayRef,
    /// Per value, what `validate_category` found wrong with it, if anything.
    pub errors: Arc<[Option<RecordError>]>,
}

impl CategoryChecks {
    /// The checks of `column`'s dictionary values: `reuse`'s if it has the same values (the
    /// batches of a column chunk share its dictionary), else new ones.
    pub(crate) fn of(column: &ArrayRef, reuse: Option<&CategoryChecks>) -> Option<CategoryChecks> {
        let dictionary = column.as_dictionary_opt::<Int32Type>()?;
        let values = dictionary.values();
        if let Some(known) = reuse.filter(|known| Arc::ptr_eq(&known.values, values)) {
            return Some(known.clone());
        }
        let texts = values.as_string_opt::<i32>()?;
        let errors = (0..texts.len())
            .map(|at| validate_category(texts.value(at)).err())
            .collect();
        Some(CategoryChecks {
            values: values.clone(),
            errors,
        })
    }
}

impl BatchColumns {
    /// The row as a small JSON object of the columns read (for the dead-letter output).
    pub(crate) fn render(&self, row: usize) -> String {
        let mut object = serde_json::Map::new();
        let item = match &self.item_id {
            ItemCol::Text(c) => text_value(c.get(row)),
            ItemCol::Int(c) => int_value(c.get(row)),
        };
        object.insert("item_id".into(), item);
        if let Some(category) = &self.category {
            object.insert("category".into(), text_value(category.get(row)));
        }
        object.insert("ts".into(), self.ts.render(row));
        if let Some(q) = &self.quantity {
            object.insert("quantity".into(), int_value(q.get(row)));
        }
        Value::Object(object).to_string()
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::DictionaryArray;

    use super::*;

    fn dictionary(values: &[&str]) -> ArrayRef {
        let array: DictionaryArray<Int32Type> = values.iter().copied().collect();
        Arc::new(array)
    }

    #[test]
    fn category_checks_follow_the_dictionary_they_were_made_for() {
        let first = dictionary(&["a/b", "a//b", "c"]);
        let checks = CategoryChecks::of(&first, None).unwrap();
        let expected: Vec<_> = ["a/b", "a//b", "c"]
            .iter()
            .map(|c| validate_category(c).err())
            .collect();
        assert_eq!(&*checks.errors, expected.as_slice());
        // The same values (another batch of the column chunk): the same checks, not redone.
        let again = CategoryChecks::of(&first, Some(&checks)).unwrap();
        assert!(Arc::ptr_eq(&again.errors, &checks.errors));
        // Other values: checked anew, whatever was checked before.
        let other = dictionary(&["/x", "y"]);
        let anew = CategoryChecks::of(&other, Some(&checks)).unwrap();
        assert_eq!(anew.errors.len(), 2);
        assert!(anew.errors[0].is_some() && anew.errors[1].is_none());
        // Not a dictionary: no checks (rows are checked one by one).
        let plain: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
        assert!(CategoryChecks::of(&plain, None).is_none());
    }
}
