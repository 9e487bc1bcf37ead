//! A restricted unpickler for the `data.pkl` of a `torch.save` checkpoint: it
//! builds plain values and never calls anything. Only the opcodes `torch.save`
//! emits for a state dict (pickle protocol 2, plus the framing and short-string
//! opcodes of protocols 3–5) are read, and only these globals are accepted, as
//! torch's own `weights_only` unpickler (torch/_weights_only_unpickler.py)
//! accepts them for a state dict:
//!
//! - `collections.OrderedDict` called with no arguments (an empty dict);
//! - `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
//!   requires_grad, backward_hooks[, metadata])`, recorded as a [`TensorRef`];
//! - `torch._utils._rebuild_parameter(data, requires_grad, backward_hooks)` and
//!   `_rebuild_parameter_with_state(…, state)`: the tensor `data`;
//! - the typed storage classes `torch.{Float,Half,BFloat16,Double,Long,Int,
//!   Short,Byte,Bool}Storage`, only inside a persistent id
//!   `('storage', class, key, location, numel)` (a [`StorageRef`]).
//!
//! Any other global (`posix.system`, `builtins.eval`, a model class…) or
//! opcode is an error naming it. `BUILD` is accepted on a dict only (the
//! `_metadata` attribute of a state dict), its state dropped.
//!
//! Hostile input: every length is checked against the bytes that remain
//! before it is read; memo references share values (`Rc`), so a value cannot
//! be made to grow exponentially through `BINGET`; containers nest at most
//! [`MAX_DEPTH`] deep (so dropping one cannot overflow the stack); a shared
//! list or dict mutated later is copied, with a budget on the elements copied.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::cast_possible_truncation
)]

use std::collections::HashMap;
use std::rc::Rc;

pub type PResult<T> = std::result::Result<T, String>;

/// Deepest nesting of tuples, lists and dicts accepted (a state dict needs 3).
pub const MAX_DEPTH: u32 = 64;
/// Most container elements copied because a shared list or dict was mutated.
const MAX_COPIED: usize = 1 << 22;
/// Longest module or class name of a `GLOBAL`.
const MAX_NAME: usize = 256;

/// The element type of a typed storage, from its class name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageDType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    U8,
    Bool,
}

impl StorageDType {
    /// `torch.<name>` → the dtype of that storage class.
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Self::F64,
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::U8 | Self::Bool => 1,
        }
    }

    /// torch's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::F64 => "float64",
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
            Self::I64 => "int64",
            Self::I32 => "int32",
            Self::I16 => "int16",
            Self::U8 => "uint8",
            Self::Bool => "bool",
        }
    }
}

/// A storage as the persistent id names it: the archive entry `data/<key>`
/// holding `numel` elements of `dtype`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub dtype: StorageDType,
    pub key: String,
    pub numel: u64,
}

/// A tensor as `_rebuild_tensor_v2` would build it: a strided view (in
/// elements) of a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
}

/// The globals the unpickler accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    Storage(StorageDType),
}

impl Global {
    fn resolve(module: &str, name: &str) -> PResult<Self> {
        Ok(match (module, name) {
            ("collections", "OrderedDict") => Self::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Self::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Self::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Self::RebuildParameterWithState,
            ("torch", class) => match StorageDType::from_class(class) {
                Some(dtype) => Self::Storage(dtype),
                None => return Err(refused(module, name)),
            },
            _ => return Err(refused(module, name)),
        })
    }
}

fn refused(module: &str, name: &str) -> String {
    let shown = |s: &str| s.chars().take(80).collect::<String>().escape_debug().to_string();
    format!(
        "refers to {}.{}, which is not one of the objects a state dict is made of \
         (OrderedDict, tensors, parameters, float/int storages); refused without running anything",
        shown(module),
        shown(name)
    )
}

/// A tuple or list.
#[derive(Debug, Clone, Default)]
pub struct Seq {
    pub items: Vec<Value>,
    depth: u32,
}

/// A dict, in insertion order (a repeated key is kept twice; see [`Map::entries`]).
#[derive(Debug, Clone, Default)]
pub struct Map {
    items: Vec<(Value, Value)>,
    depth: u32,
}

impl Map {
    /// The value of a string key (the last one set, as in Python).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.items.iter().rev().find(|(k, _)| matches!(k, Value::Str(s) if &**s == key)).map(|(_, v)| v)
    }

    /// The entries as a Python dict holds them: each key once, where it was
    /// first set, with the value it was last set to.
    pub fn entries(&self) -> Vec<(&Value, &Value)> {
        let mut out: Vec<(&Value, &Value)> = Vec::with_capacity(self.items.len());
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (k, v) in &self.items {
            if let Value::Str(s) = k {
                if let Some(slot) = index.get(&**s).and_then(|&i| out.get_mut(i)) {
                    slot.1 = v;
                    continue;
                }
                index.insert(s, out.len());
            }
            out.push((k, v));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A value of the pickle.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Tuple(Rc<Seq>),
    List(Rc<Seq>),
    Dict(Rc<Map>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(m) => m.depth,
            _ => 0,
        }
    }

    /// What it is, for error messages (never its contents: they may be huge).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(_) => "a class or function",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
        }
    }
}

fn depth_of<'a>(values: impl Iterator<Item = &'a Value>) -> PResult<u32> {
    let depth = values.map(Value::depth).max().unwrap_or(0).saturating_add(1);
    if depth > MAX_DEPTH {
        return Err(format!("nests containers more than {MAX_DEPTH} deep"));
    }
    Ok(depth)
}

fn seq(items: Vec<Value>) -> PResult<Rc<Seq>> {
    let depth = depth_of(items.iter())?;
    Ok(Rc::new(Seq { items, depth }))
}

fn pairs(items: Vec<Value>) -> PResult<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        return Err("a dict is built from an odd number of items".into());
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// The name of a pickle opcode (pickletools), for the refusal message.
fn opcode_name(op: u8) -> &'static str {
    match op {
        b'I' => "INT",
        b'L' => "LONG",
        b'F' => "FLOAT",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8e => "BINBYTES8",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        0x8b => "LONG4",
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        b'P' => "PERSID",
        b'g' => "GET",
        b'p' => "PUT",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        _ => "unknown",
    }
}

struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// Stack lengths at each open `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    copied: usize,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or("length overflows")?;
        let bytes = self
            .input
            .get(self.pos..end)
            .ok_or_else(|| format!("truncated: {n} bytes needed at byte {}, {} left", self.pos, self.input.len().saturating_sub(self.pos)))?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> PResult<[u8; N]> {
        let bytes = self.take(N)?;
        bytes.try_into().map_err(|_| "truncated".to_string())
    }

    fn u8(&mut self) -> PResult<u8> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    fn line(&mut self) -> PResult<&'a str> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .take(MAX_NAME.saturating_add(1))
            .position(|&b| b == b'\n')
            .ok_or_else(|| format!("GLOBAL at byte {}: no name of at most {MAX_NAME} bytes ending in a newline", self.pos))?;
        let bytes = self.take(len)?;
        self.take(1)?;
        std::str::from_utf8(bytes).map_err(|_| "GLOBAL name is not UTF-8".to_string())
    }

    fn string(&mut self, len: u64) -> PResult<Value> {
        let len = usize::try_from(len).map_err(|_| "string length overflows")?;
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| format!("string before byte {} is not UTF-8", self.pos))?;
        Ok(Value::Str(Rc::from(s)))
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn pop(&mut self) -> PResult<Value> {
        if self.stack.len() <= self.floor() {
            return Err(format!("stack underflow at byte {}", self.pos));
        }
        self.stack.pop().ok_or_else(|| "stack underflow".to_string())
    }

    fn top(&mut self) -> PResult<&mut Value> {
        if self.stack.len() <= self.floor() {
            return Err(format!("stack underflow at byte {}", self.pos));
        }
        self.stack.last_mut().ok_or_else(|| "stack underflow".to_string())
    }

    fn pop_mark(&mut self) -> PResult<Vec<Value>> {
        let mark = self.marks.pop().ok_or_else(|| format!("no MARK open at byte {}", self.pos))?;
        if mark > self.stack.len() {
            return Err("MARK beyond the stack".into());
        }
        Ok(self.stack.split_off(mark))
    }

    /// Charges the copy of a shared container about to be mutated.
    fn charge(&mut self, len: usize) -> PResult<()> {
        self.copied = self.copied.saturating_add(len);
        if self.copied > MAX_COPIED {
            return Err("copies shared containers more than a state dict needs".into());
        }
        Ok(())
    }

    fn extend_list(&mut self, items: Vec<Value>) -> PResult<()> {
        let added = depth_of(items.iter())?;
        let shared_len = match self.top()? {
            Value::List(l) if Rc::strong_count(l) > 1 => l.items.len(),
            Value::List(_) => 0,
            other => return Err(format!("APPEND(S) to {}, not a list", other.kind())),
        };
        self.charge(shared_len)?;
        if let Value::List(l) = self.top()? {
            let l = Rc::make_mut(l);
            l.depth = l.depth.max(added);
            l.items.extend(items);
        }
        Ok(())
    }

    fn extend_dict(&mut self, items: Vec<(Value, Value)>) -> PResult<()> {
        let added = depth_of(items.iter().flat_map(|(k, v)| [k, v]))?;
        let shared_len = match self.top()? {
            Value::Dict(d) if Rc::strong_count(d) > 1 => d.items.len(),
            Value::Dict(_) => 0,
            other => return Err(format!("SETITEM(S) on {}, not a dict", other.kind())),
        };
        self.charge(shared_len)?;
        if let Value::Dict(d) = self.top()? {
            let d = Rc::make_mut(d);
            d.depth = d.depth.max(added);
            d.items.extend(items);
        }
        Ok(())
    }

    fn memo_get(&mut self, id: u32) -> PResult<()> {
        let v = self.memo.get(&id).cloned().ok_or_else(|| format!("memo entry {id} read before it was set"))?;
        self.push(v);
        Ok(())
    }

    fn memo_put(&mut self, id: u32) -> PResult<()> {
        let v = self.top()?.clone();
        self.memo.insert(id, v);
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> PResult<()> {
        let g = Global::resolve(module, name)?;
        self.push(Value::Global(g));
        Ok(())
    }

    fn reduce(&mut self) -> PResult<()> {
        let args = self.pop()?;
        let callable = self.pop()?;
        let Value::Global(g) = callable else {
            return Err(format!("REDUCE calls {}, not a known function", callable.kind()));
        };
        let Value::Tuple(args) = args else {
            return Err(format!("REDUCE with {} as its arguments, not a tuple", args.kind()));
        };
        let args = &args.items;
        let v = match g {
            Global::OrderedDict if args.is_empty() => Value::Dict(Rc::new(Map { items: Vec::new(), depth: 1 })),
            Global::OrderedDict => return Err("OrderedDict called with arguments".into()),
            Global::RebuildTensorV2 => Value::Tensor(Rc::new(rebuild_tensor(args)?)),
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                let expected = if g == Global::RebuildParameter { 3 } else { 4 };
                match args.first() {
                    Some(Value::Tensor(t)) if args.len() == expected => Value::Tensor(t.clone()),
                    _ => return Err(format!("_rebuild_parameter called without a tensor and {} arguments", expected)),
                }
            }
            Global::Storage(dtype) => return Err(format!("calls the storage class of {} directly", dtype.name())),
        };
        self.push(v);
        Ok(())
    }

    fn build(&mut self) -> PResult<()> {
        let _state = self.pop()?;
        match self.top()? {
            Value::Dict(_) => Ok(()),
            other => Err(format!("BUILD on {}: only a dict's attributes are accepted", other.kind())),
        }
    }

    fn persistent_load(&mut self) -> PResult<()> {
        let pid = self.pop()?;
        let Value::Tuple(t) = &pid else {
            return Err(format!("persistent id is {}, not a tuple", pid.kind()));
        };
        let storage = match t.items.as_slice() {
            [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_location), Value::Int(numel)]
                if &**tag == "storage" =>
            {
                let numel = u64::try_from(*numel).map_err(|_| format!("storage {key:?} has a negative size"))?;
                if key.is_empty() || key.len() > 64 || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(format!("storage key {:?} is not a plain name", key.chars().take(80).collect::<String>()));
                }
                StorageRef { dtype: *dtype, key: key.to_string(), numel }
            }
            _ => return Err("persistent id is not ('storage', torch.<Type>Storage, key, location, size)".into()),
        };
        self.push(Value::Storage(Rc::new(storage)));
        Ok(())
    }

    /// Runs one opcode; `Some(value)` at STOP.
    fn step(&mut self) -> PResult<Option<Value>> {
        let at = self.pos;
        let op = self.u8()?;
        match op {
            0x80 => {
                let proto = self.u8()?;
                if proto > 5 {
                    return Err(format!("pickle protocol {proto} (at most 5 exists)"));
                }
            }
            0x95 => {
                self.take(8)?; // FRAME: a length hint only
            }
            b'.' => return self.pop().map(Some),
            b'(' => self.marks.push(self.stack.len()),
            b')' => self.push(Value::Tuple(seq(Vec::new())?)),
            b't' => {
                let items = self.pop_mark()?;
                self.push(Value::Tuple(seq(items)?));
            }
            0x85..=0x87 => {
                let n = usize::from(op.saturating_sub(0x84));
                let floor = self.floor();
                let start = self.stack.len().checked_sub(n).filter(|&s| s >= floor).ok_or("stack underflow in TUPLEn")?;
                let items = self.stack.split_off(start);
                self.push(Value::Tuple(seq(items)?));
            }
            b']' => self.push(Value::List(seq(Vec::new())?)),
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Value::List(seq(items)?));
            }
            b'a' => {
                let v = self.pop()?;
                self.extend_list(vec![v])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.extend_list(items)?;
            }
            b'}' => self.push(Value::Dict(Rc::new(Map { items: Vec::new(), depth: 1 }))),
            b'd' => {
                let items = pairs(self.pop_mark()?)?;
                let depth = depth_of(items.iter().flat_map(|(k, v)| [k, v]))?;
                self.push(Value::Dict(Rc::new(Map { items, depth })));
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.extend_dict(vec![(k, v)])?;
            }
            b'u' => {
                let items = pairs(self.pop_mark()?)?;
                self.extend_dict(items)?;
            }
            b'N' => self.push(Value::None),
            0x88 => self.push(Value::Bool(true)),
            0x89 => self.push(Value::Bool(false)),
            b'J' => {
                let v = i32::from_le_bytes(self.array()?);
                self.push(Value::Int(i64::from(v)));
            }
            b'K' => {
                let v = self.u8()?;
                self.push(Value::Int(i64::from(v)));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.array()?);
                self.push(Value::Int(i64::from(v)));
            }
            0x8a => {
                let n = usize::from(self.u8()?);
                if n > 8 {
                    return Err(format!("LONG1 of {n} bytes: an integer beyond 64 bits"));
                }
                let bytes = self.take(n)?;
                let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
                let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
                for (d, s) in buf.iter_mut().zip(bytes) {
                    *d = *s;
                }
                self.push(Value::Int(i64::from_le_bytes(buf)));
            }
            b'G' => {
                let v = f64::from_be_bytes(self.array()?);
                self.push(Value::Float(v));
            }
            b'X' => {
                let len = u32::from_le_bytes(self.array()?);
                let v = self.string(u64::from(len))?;
                self.push(v);
            }
            0x8c => {
                let len = self.u8()?;
                let v = self.string(u64::from(len))?;
                self.push(v);
            }
            0x8d => {
                let len = u64::from_le_bytes(self.array()?);
                let v = self.string(len)?;
                self.push(v);
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.global(module, name)?;
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (&module, &name) {
                    (Value::Str(m), Value::Str(n)) => {
                        let (m, n) = (m.clone(), n.clone());
                        self.global(&m, &n)?;
                    }
                    _ => return Err("STACK_GLOBAL without two strings".into()),
                }
            }
            b'R' => self.reduce()?,
            b'b' => self.build()?,
            b'q' => {
                let id = self.u8()?;
                self.memo_put(u32::from(id))?;
            }
            b'r' => {
                let id = u32::from_le_bytes(self.array()?);
                self.memo_put(id)?;
            }
            0x94 => {
                let id = u32::try_from(self.memo.len()).map_err(|_| "memo too large")?;
                self.memo_put(id)?;
            }
            b'h' => {
                let id = self.u8()?;
                self.memo_get(u32::from(id))?;
            }
            b'j' => {
                let id = u32::from_le_bytes(self.array()?);
                self.memo_get(id)?;
            }
            b'Q' => self.persistent_load()?,
            other => {
                return Err(format!(
                    "opcode {:#04x} ({}) at byte {at} is not one torch.save emits for a state dict",
                    other,
                    opcode_name(other)
                ))
            }
        }
        Ok(None)
    }
}

fn dims(v: &Value, what: &str) -> PResult<Vec<u64>> {
    let Value::Tuple(t) = v else {
        return Err(format!("tensor {what} is {}, not a tuple", v.kind()));
    };
    t.items
        .iter()
        .map(|d| match d {
            Value::Int(i) => u64::try_from(*i).map_err(|_| format!("tensor {what} has a negative entry {i}")),
            other => Err(format!("tensor {what} holds {}, not an int", other.kind())),
        })
        .collect()
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
/// backward_hooks[, metadata])` (torch/_utils.py).
fn rebuild_tensor(args: &[Value]) -> PResult<TensorRef> {
    let [storage, offset, size, stride, _requires_grad, _hooks, rest @ ..] = args else {
        return Err(format!("_rebuild_tensor_v2 called with {} arguments (6 or 7 expected)", args.len()));
    };
    if rest.len() > 1 {
        return Err(format!("_rebuild_tensor_v2 called with {} arguments (6 or 7 expected)", args.len()));
    }
    let Value::Storage(storage) = storage else {
        return Err(format!("_rebuild_tensor_v2 on {}, not a storage", storage.kind()));
    };
    let offset = match offset {
        Value::Int(i) => u64::try_from(*i).map_err(|_| format!("negative storage offset {i}"))?,
        other => return Err(format!("storage offset is {}, not an int", other.kind())),
    };
    let size = dims(size, "size")?;
    let stride = dims(stride, "stride")?;
    if size.len() != stride.len() {
        return Err(format!("tensor size has {} dimensions but its stride {}", size.len(), stride.len()));
    }
    Ok(TensorRef { storage: storage.clone(), offset, size, stride })
}

/// Unpickles `input` up to its `STOP` opcode. Errors say what was refused
/// and where; nothing is ever called or imported.
pub fn unpickle(input: &[u8]) -> PResult<Value> {
    let mut m = Machine { input, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), copied: 0 };
    loop {
        if let Some(v) = m.step()? {
            return Ok(v);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_reduce_to_os_system_by_name() {
        // pickle.dumps of a __reduce__ returning (os.system, ('echo',)), protocol 2.
        let p = b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00echoq\x01\x85q\x02Rq\x03.";
        let e = unpickle(p).unwrap_err();
        assert!(e.contains("posix.system"), "{e}");
    }

    #[test]
    fn refuses_unknown_opcodes_by_name() {
        let e = unpickle(b"\x80\x02(i__main__\nX\n.").unwrap_err();
        assert!(e.contains("INST"), "{e}");
    }

    #[test]
    fn memo_sharing_does_not_blow_up_and_nesting_is_bounded() {
        // A list put in the memo and appended to itself many times: linear work.
        let mut p = b"\x80\x02]q\x00".to_vec();
        for _ in 0..10_000 {
            p.extend_from_slice(b"h\x00a");
        }
        p.push(b'.');
        assert!(unpickle(&p).is_ok());
        // 100 nested tuples: refused, never a deep drop.
        let mut p = b"\x80\x02N".to_vec();
        p.extend(std::iter::repeat_n(0x85u8, 100));
        p.push(b'.');
        assert!(unpickle(&p).unwrap_err().contains("deep"));
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert!(unpickle(b"\x80\x02X\xff\xff\xff\xffab").unwrap_err().contains("truncated"));
        assert!(unpickle(b"").is_err());
        assert!(unpickle(b"\x80\x02(.").is_err());
    }
}
