//! Member offsets of kernel structures from the kernel's BTF (`/sys/kernel/btf/vmlinux`), for the
//! sock program, which follows a socket to its network namespace and received bytes.
//!
//! Written here rather than taken from a BTF crate: the crates at hand (`btfparse`) build a table of
//! every kernel type with owned names, ~50 MiB that the allocator keeps for vigil's whole life, to
//! answer three lookups; aya's own parser keeps its type walk private. This reads the type section in
//! place, once, and keeps nothing but 4 bytes a type while it runs. The format is the kernel's (`Documentation/bpf/btf.rst`): a header,
//! then types (a 12-byte `btf_type` each, followed by data whose size its kind and `vlen` give), then
//! NUL-terminated strings.

use std::path::Path;

/// The kernel's BTF file, mapped (copy-on-write, read-only; kernels since 6.16 allow it) so that its
/// 5–6 MiB never pass through the allocator, which would keep them; read into memory where the kernel
/// refuses the mapping.
pub enum KernelBtf {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl KernelBtf {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        // SAFETY: a private, read-only mapping of the kernel's BTF, which nothing writes while vigil
        // reads it (the kernel's own types do not change while it runs).
        match unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) } {
            Ok(mapped) => Ok(KernelBtf::Mapped(mapped)),
            Err(_) => Ok(KernelBtf::Read(std::fs::read(path)?)),
        }
    }
}

impl std::ops::Deref for KernelBtf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            KernelBtf::Mapped(mapped) => mapped,
            KernelBtf::Read(bytes) => bytes,
        }
    }
}

/// Why a member offset could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    #[error("no struct {0}")]
    NoStruct(String),
    #[error("struct {structure} has no member {member}")]
    NoMember { structure: String, member: String },
    #[error("{0} is a bit field")]
    BitField(String),
}

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// One type of the section: where its record starts, its kind, name, `vlen` and `kind_flag`, and the
/// `size_or_type` word.
#[derive(Clone, Copy)]
struct Type {
    start: usize,
    kind: u32,
    name: u32,
    vlen: usize,
    kind_flag: bool,
    size_or_type: u32,
}

/// The kernel's BTF, borrowed, with where each type starts (by id − 1): 4 bytes a type, so that what
/// the lookup allocates stays small.
pub struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    starts: Vec<u32>,
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, BtfError> {
    bytes
        .get(at..at + 4)
        .map(|word| u32::from_le_bytes(word.try_into().expect("four bytes")))
        .ok_or(BtfError::Malformed("truncated"))
}

impl<'a> Btf<'a> {
    /// Indexes the types of `data` (little-endian BTF, as on the machines vigil runs on).
    pub fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let magic = data
            .get(0..2)
            .map(|bytes| u16::from_le_bytes([bytes[0], bytes[1]]));
        if magic != Some(MAGIC) {
            return Err(BtfError::Malformed("not little-endian BTF"));
        }
        let header_length = u32_at(data, 4)? as usize;
        let section = |offset: usize, length: usize| -> Result<&'a [u8], BtfError> {
            let start = header_length + u32_at(data, offset)? as usize;
            let length = u32_at(data, length)? as usize;
            data.get(start..start + length)
                .ok_or(BtfError::Malformed("section past the end"))
        };
        let types = section(8, 12)?;
        let strings = section(16, 20)?;
        let mut starts = Vec::with_capacity(types.len() / 32);
        let mut at = 0;
        while at < types.len() {
            let found = Self::type_at(types, at)?;
            let trailing = match found.kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * found.vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * found.vlen,
                _ => 0,
            };
            starts.push(at as u32);
            at += 12 + trailing;
        }
        Ok(Btf {
            types,
            strings,
            starts,
        })
    }

    /// The type whose record starts at `at` of the type section.
    fn type_at(types: &[u8], at: usize) -> Result<Type, BtfError> {
        let info = u32_at(types, at + 4)?;
        Ok(Type {
            start: at,
            kind: (info >> 24) & 0x1f,
            name: u32_at(types, at)?,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 != 0,
            size_or_type: u32_at(types, at + 8)?,
        })
    }

    /// The id of the first struct named `name`.
    fn struct_id(&self, name: &str) -> Result<u32, BtfError> {
        for (index, start) in self.starts.iter().enumerate() {
            let found = Self::type_at(self.types, *start as usize)?;
            if found.kind == KIND_STRUCT && self.string(found.name)? == name {
                return Ok(index as u32 + 1);
            }
        }
        Err(BtfError::NoStruct(name.to_owned()))
    }

    fn string(&self, offset: u32) -> Result<&'a str, BtfError> {
        let rest = self
            .strings
            .get(offset as usize..)
            .ok_or(BtfError::Malformed("string past the end"))?;
        let end = rest
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).map_err(|_| BtfError::Malformed("string not UTF-8"))
    }

    fn type_by_id(&self, id: u32) -> Result<Type, BtfError> {
        let start = id
            .checked_sub(1)
            .and_then(|index| self.starts.get(index as usize))
            .ok_or(BtfError::Malformed("type id out of range"))?;
        Self::type_at(self.types, *start as usize)
    }

    /// `id` with typedefs and qualifiers taken off.
    fn resolve(&self, mut id: u32) -> Result<Type, BtfError> {
        for _ in 0..32 {
            let found = self.type_by_id(id)?;
            match found.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = found.size_or_type
                }
                _ => return Ok(found),
            }
        }
        Err(BtfError::Malformed("type chain too long"))
    }

    /// The byte offset of `path` (`member.member…`) in struct `structure`.
    pub fn member_offset(&self, structure: &str, path: &str) -> Result<u32, BtfError> {
        let mut id = self.struct_id(structure)?;
        let mut bits = 0u32;
        for member in path.split('.') {
            let container = self.resolve(id)?;
            if !matches!(container.kind, KIND_STRUCT | KIND_UNION) {
                return Err(BtfError::Malformed("member of a non-struct"));
            }
            let mut found = None;
            for index in 0..container.vlen {
                let at = container.start + 12 + 12 * index;
                if self.string(u32_at(self.types, at)?)? == member {
                    found = Some((u32_at(self.types, at + 4)?, u32_at(self.types, at + 8)?));
                    break;
                }
            }
            let (member_type, offset) = found.ok_or_else(|| BtfError::NoMember {
                structure: structure.to_owned(),
                member: path.to_owned(),
            })?;
            // With kind_flag, the offset's high byte is a bit field's size.
            let (size, offset) = match container.kind_flag {
                true => (offset >> 24, offset & 0x00ff_ffff),
                false => (0, offset),
            };
            if size != 0 || offset % 8 != 0 {
                return Err(BtfError::BitField(format!("{structure}.{path}")));
            }
            bits += offset;
            id = member_type;
        }
        Ok(bits / 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's kernel BTF, when it has one (every kernel vigil supports does).
    fn kernel_btf() -> Option<Vec<u8>> {
        std::fs::read("/sys/kernel/btf/vmlinux").ok()
    }

    #[test]
    fn the_kernels_socket_members_are_found_and_nested_offsets_add_up() {
        let Some(bytes) = kernel_btf() else {
            println!("SKIPPED the_kernels_socket_members_are_found: no /sys/kernel/btf/vmlinux");
            return;
        };
        let btf = Btf::parse(&bytes).unwrap();
        // struct sock begins with its sock_common; the nested path is the sum of its parts.
        let common = btf.member_offset("sock", "__sk_common").unwrap();
        assert_eq!(common, 0);
        let net = btf
            .member_offset("sock", "__sk_common.skc_net.net")
            .unwrap();
        assert_eq!(
            net,
            btf.member_offset("sock_common", "skc_net").unwrap()
                + btf.member_offset("possible_net_t", "net").unwrap_or(0)
        );
        assert!(btf.member_offset("net", "ns.inum").unwrap() > 0);
        assert!(btf.member_offset("tcp_sock", "bytes_received").unwrap() > 0);
        assert!(matches!(
            btf.member_offset("sock", "no_such_member"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("no_such_struct", "x"),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x9f\xeb",
            b"\x9f\xeb\x01\x00\x18\x00\x00\x00",
            b"garbage!",
        ] {
            assert!(Btf::parse(bytes).is_err());
        }
    }
}
