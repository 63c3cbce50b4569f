"""A loader for LLVM's ELF64 x86-64 relocatable objects: object bytes -> callable memory, without LLVM.

Why it exists: a process that only loads cached object code should not import
``llvmlite.binding`` (loading LLVM costs ~25 ms, more than the rest of a warm
start).  The engine (`hlojit.runtime.engine`) tries this loader first and
falls back to MCJIT when it raises `UnsupportedObject`.

What it handles: the objects the engine's target machine emits (large code
model, static relocation model), whose code and data reference each other and
external functions only through absolute ``R_X86_64_64`` relocations, plus
the PC-relative forms a small-code-model or PIC object would use
(``PC32``/``PLT32``/``PC64``, ``32``/``32S``, and the ``GOTPCREL`` family
through a private GOT).  Anything else - TLS, COMMON or IFUNC symbols,
static constructors or destructors, unknown relocation or section kinds -
raises `UnsupportedObject` with the reason.

What it rejects: bytes that are not a well-formed object (truncated,
corrupted: a field pointing outside the file or outside its section) raise
`MalformedObjectError`.  Those must not be handed to MCJIT either: LLVM's
RuntimeDyld segfaults or aborts the process (``LLVM ERROR``) on truncated and
bit-flipped objects (measured with llvmlite 0.50), so the engine reports them
as errors instead of falling back.  Every read here is bounds-checked before
it is made and every write lands inside the image, so no input makes the
loader itself touch memory it does not own.

Memory layout and W^X: the image is one anonymous private mapping, made of
three page-aligned regions - code (plus far-call stubs), read-only data (plus
the GOT) and writable data.  All pages are mapped read+write while the bytes
are copied and relocated, then code becomes read+execute and read-only data
read-only; no page is ever writable and executable at once.  Keeping the
regions in one mapping bounds every intra-image distance by the image size,
so PC-relative references between sections always fit in 32 bits.

Far symbols: a ``PLT32`` call to an external function more than +-2 GiB away
(shared libraries usually are mapped far from anonymous memory) goes through
a 16-byte stub in the code region (``jmp *0(%rip)`` followed by the absolute
address); a ``PC32`` reference to external *data* cannot be redirected
without changing its meaning, so it raises `UnsupportedObject`.

Unwinding: ``.eh_frame`` is not loaded and no unwind information is
registered, so a C++ exception or a forced unwind (``pthread_cancel``,
``pthread_exit``) crossing generated code would terminate the process.
Generated code only calls C (libm, BLAS, pthread, the CPython C API), which
never throws, and nothing cancels its threads.  Debuggers and profilers see
generated frames without unwind information.

Lifetime: the mapping lives until `NativeImage.close` (the engine calls it
when its ``CompiledLibrary`` is closed or collected).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import sys
from typing import Callable, NamedTuple

__all__ = [
    "NATIVE_LOADING_SUPPORTED",
    "MalformedObjectError",
    "NativeImage",
    "SymbolResolver",
    "UnsupportedObject",
]

#: Whether this process can run x86-64 ELF code at all (checked when an image is made, so tests can
#: patch it to exercise the fallback).
NATIVE_LOADING_SUPPORTED: bool = sys.platform.startswith("linux") and os.uname().machine == "x86_64"

#: Resolves an undefined symbol's name to its address in this process, None when it is not found.
SymbolResolver = Callable[[str], "int | None"]


class UnsupportedObject(Exception):
    """A well-formed object this loader does not handle: the engine may load it with MCJIT.

    ``reason`` says why; ``mcjit_can_load`` is False when MCJIT would load the
    object but silently get it wrong (static constructors/destructors, which
    it does not run for object files), so the engine must report an error.
    ``unresolved`` names undefined symbols nothing in this process defines.
    """

    def __init__(self, reason: str, *, mcjit_can_load: bool = True, unresolved: tuple[str, ...] = ()):
        super().__init__(reason)
        self.reason = reason
        self.mcjit_can_load = mcjit_can_load
        self.unresolved = unresolved


class MalformedObjectError(ValueError):
    """The bytes are not a well-formed ELF relocatable object (truncated or corrupt)."""


# ---------------------------------------------------------------------------
# ELF64 constants (System V gABI and the x86-64 psABI)

_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")
_SYMBOL = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")
_ET_REL, _EM_X86_64 = 1, 62
_SHT_NULL, _SHT_PROGBITS, _SHT_SYMTAB, _SHT_STRTAB, _SHT_RELA = 0, 1, 2, 3, 4
_SHT_NOTE, _SHT_NOBITS, _SHT_REL = 7, 8, 9
_SHT_INIT_ARRAY, _SHT_FINI_ARRAY, _SHT_PREINIT_ARRAY = 14, 15, 16
_SHT_X86_64_UNWIND = 0x70000001
_SHF_WRITE, _SHF_ALLOC, _SHF_EXECINSTR, _SHF_TLS = 0x1, 0x2, 0x4, 0x400
_SHN_UNDEF, _SHN_LORESERVE, _SHN_ABS, _SHN_COMMON = 0, 0xFF00, 0xFFF1, 0xFFF2
_STB_LOCAL, _STB_WEAK = 0, 2
_STT_TLS, _STT_GNU_IFUNC = 6, 10
# Sections whose contents someone must run at load or unload time; older and newer spellings.
_CONSTRUCTOR_SECTION_PREFIXES = (".ctors", ".dtors", ".init_array", ".fini_array", ".preinit_array")
_CONSTRUCTOR_SECTION_NAMES = (".init", ".fini")

# x86-64 relocation types this loader applies.
_R_NONE, _R_64, _R_PC32, _R_PLT32, _R_GOTPCREL = 0, 1, 2, 4, 9
_R_32, _R_32S, _R_PC64, _R_GOTPCRELX, _R_REX_GOTPCRELX = 10, 11, 24, 41, 42
_GOT_RELOCATIONS = frozenset({_R_GOTPCREL, _R_GOTPCRELX, _R_REX_GOTPCRELX})
_RELOCATION_NAMES = {
    _R_64: "R_X86_64_64", _R_PC32: "R_X86_64_PC32", _R_PLT32: "R_X86_64_PLT32",
    _R_GOTPCREL: "R_X86_64_GOTPCREL", _R_32: "R_X86_64_32", _R_32S: "R_X86_64_32S",
    _R_PC64: "R_X86_64_PC64", _R_GOTPCRELX: "R_X86_64_GOTPCRELX",
    _R_REX_GOTPCRELX: "R_X86_64_REX_GOTPCRELX",
}
_RELOCATION_WIDTHS = {_R_64: 8, _R_PC64: 8}  # every other applied type patches 4 bytes
# The psABI defines types 0..51 (and two GNU vtable markers); anything else is corruption.
_LAST_DEFINED_RELOCATION = 51
_GNU_VTABLE_RELOCATIONS = (250, 251)

# A far-call stub: jmp *0(%rip), then the 8-byte target, padded with int3 to 16 bytes.
_STUB_SIZE = 16
_STUB_JUMP = b"\xff\x25\x00\x00\x00\x00"
_GOT_ENTRY_SIZE = 8
# Images above this size go to MCJIT: far beyond any generated module, and keeps PC32 sound.
_MAX_IMAGE_SIZE = 1 << 30
_ADDRESS_SPACE = 1 << 47  # user space on x86-64 Linux: no section of an object can be larger

_PROT_READ, _PROT_WRITE, _PROT_EXEC = 1, 2, 4
_CODE, _RODATA, _DATA = 0, 1, 2  # the image's regions, in address order


class _Section(NamedTuple):
    name: str
    kind: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    align: int
    entsize: int


class _Symbol(NamedTuple):
    name: str
    binding: int
    kind: int
    section: int
    value: int


class _Relocation(NamedTuple):
    offset: int  # within the target section
    kind: int
    symbol: int  # index into the symbol table
    addend: int


def _c_string(table: bytes, offset: int, what: str) -> str:
    end = table.find(b"\0", offset)
    if offset >= len(table) or end < 0:
        raise MalformedObjectError(f"{what}: name offset {offset} outside its string table")
    return table[offset:end].decode("utf-8", "surrogateescape")


def _is_utf8(name: str) -> bool:
    """Whether a name decoded with surrogateescape was valid UTF-8 (resolvers encode names back)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


class _MprotectFunction:
    """libc's ``mprotect``, typed once (ctypes' default int arguments would truncate addresses)."""

    _function = None

    @classmethod
    def get(cls):
        if cls._function is None:
            function = ctypes.CDLL(None, use_errno=True).mprotect
            function.restype = ctypes.c_int
            function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            cls._function = function  # (a racing thread makes an identical one: harmless)
        return cls._function


# ---------------------------------------------------------------------------
# Parsing: every offset and index is checked before it is used


class _ParsedObject:
    """The sections, symbols and relocations of an object, validated against its own bounds."""

    def __init__(self, obj: bytes):
        if len(obj) < _ELF_HEADER.size:
            raise MalformedObjectError(f"{len(obj)} bytes is shorter than an ELF header")
        header = _ELF_HEADER.unpack_from(obj, 0)
        ident, e_type, machine = header[0], header[1], header[2]
        shoff, shentsize, shnum, shstrndx = header[6], header[11], header[12], header[13]
        if ident[:4] != b"\x7fELF":
            raise UnsupportedObject("not an ELF object")
        if ident[4] != 2 or ident[5] != 1:
            raise UnsupportedObject("not a 64-bit little-endian ELF object")
        if e_type != _ET_REL:
            raise UnsupportedObject(f"ELF type {e_type}, not a relocatable object")
        if machine != _EM_X86_64:
            raise UnsupportedObject(f"ELF machine {machine}, not x86-64")
        if shentsize != _SECTION_HEADER.size:
            raise MalformedObjectError(f"section header size {shentsize}, expected {_SECTION_HEADER.size}")
        if shnum == 0 or shstrndx >= _SHN_LORESERVE:
            # Extended numbering (more than 65279 sections): never for generated modules.
            raise UnsupportedObject("extended section numbering")
        if shoff + shnum * shentsize > len(obj):
            raise MalformedObjectError("the section header table runs past the end of the object")
        if shstrndx >= shnum:
            raise MalformedObjectError(f"section name table index {shstrndx} out of {shnum} sections")
        raw = [_SECTION_HEADER.unpack_from(obj, shoff + i * shentsize) for i in range(shnum)]
        for index, fields in enumerate(raw):
            kind, offset, size = fields[1], fields[4], fields[5]
            if kind not in (_SHT_NULL, _SHT_NOBITS) and offset + size > len(obj):
                raise MalformedObjectError(f"section {index} runs past the end of the object")
        names = self._contents(obj, raw[shstrndx])
        self.sections = [
            _Section(_c_string(names, f[0], f"section {i}"), *f[1:3], *f[4:10])
            for i, f in enumerate(raw)
        ]
        self.obj = obj
        self.symbols, self.symtab_index = self._parse_symbols()
        self.relocations = self._parse_relocations()

    @staticmethod
    def _contents(obj: bytes, fields: tuple) -> bytes:
        return obj[fields[4]:fields[4] + fields[5]]

    def section_bytes(self, index: int) -> bytes:
        section = self.sections[index]
        return self.obj[section.offset:section.offset + section.size]

    def _parse_symbols(self) -> tuple[list[_Symbol], int]:
        tables = [i for i, s in enumerate(self.sections) if s.kind == _SHT_SYMTAB]
        if len(tables) != 1:
            raise UnsupportedObject(f"{len(tables)} symbol tables")
        symtab = self.sections[tables[0]]
        if symtab.entsize != _SYMBOL.size or symtab.size % _SYMBOL.size:
            raise MalformedObjectError(f"symbol table entry size {symtab.entsize}, size {symtab.size}")
        if not 0 < symtab.link < len(self.sections) or self.sections[symtab.link].kind != _SHT_STRTAB:
            raise MalformedObjectError(f"symbol table names section {symtab.link}, not a string table")
        strings = self.section_bytes(symtab.link)
        symbols = []
        for position in range(symtab.size // _SYMBOL.size):
            name_at, info, _, shndx, value, _ = _SYMBOL.unpack_from(self.obj, symtab.offset + position * _SYMBOL.size)
            name = _c_string(strings, name_at, f"symbol {position}")
            symbol = _Symbol(name, info >> 4, info & 0xF, shndx, value)
            if position and shndx == _SHN_UNDEF and not name:
                raise MalformedObjectError(f"undefined symbol {position} has no name")
            if shndx != _SHN_UNDEF and shndx < _SHN_LORESERVE:
                if shndx >= len(self.sections):
                    raise MalformedObjectError(f"symbol {name!r} in section {shndx} of {len(self.sections)}")
                if value > self.sections[shndx].size:
                    raise MalformedObjectError(f"symbol {name!r} lies past the end of its section")
            symbols.append(symbol)
        return symbols, tables[0]

    def _parse_relocations(self) -> dict[int, list[_Relocation]]:
        """Relocations per target section, every field checked (types are checked when applied)."""
        by_target: dict[int, list[_Relocation]] = {}
        for index, section in enumerate(self.sections):
            if section.kind == _SHT_REL:
                raise UnsupportedObject(f"REL relocations in {section.name} (x86-64 uses RELA)")
            if section.kind != _SHT_RELA:
                continue
            if section.entsize != _RELA.size or section.size % _RELA.size:
                raise MalformedObjectError(f"{section.name}: entry size {section.entsize}, size {section.size}")
            if section.link != self.symtab_index:
                raise MalformedObjectError(f"{section.name} refers to symbol table {section.link}")
            if not 0 < section.info < len(self.sections):
                raise MalformedObjectError(f"{section.name} applies to section {section.info}")
            target_size = self.sections[section.info].size
            relocations = by_target.setdefault(section.info, [])
            for position in range(section.size // _RELA.size):
                where, info, addend = _RELA.unpack_from(self.obj, section.offset + position * _RELA.size)
                kind, symbol = info & 0xFFFFFFFF, info >> 32
                if kind > _LAST_DEFINED_RELOCATION and kind not in _GNU_VTABLE_RELOCATIONS:
                    raise MalformedObjectError(f"{section.name}: relocation type {kind} is not an x86-64 type")
                if symbol >= len(self.symbols):
                    raise MalformedObjectError(f"{section.name}: symbol {symbol} of {len(self.symbols)}")
                if where + _RELOCATION_WIDTHS.get(kind, 4) > target_size:
                    raise MalformedObjectError(f"{section.name}: relocation at {where} outside its section")
                relocations.append(_Relocation(where, kind, symbol, addend))
        return by_target


# ---------------------------------------------------------------------------
# The image


class NativeImage:
    """An object's allocated sections in fresh pages, relocated, code read+execute (see the module doc).

    ``resolve`` maps each undefined symbol's name to an address (None when
    not found: an error unless the symbol is weak, which then resolves to 0).
    ``exports`` maps every global symbol the object defines to its address.
    Raises `UnsupportedObject` (load it with MCJIT) or `MalformedObjectError`.
    """

    def __init__(self, obj: bytes, resolve: SymbolResolver):
        self._mapping: mmap.mmap | None = None
        self.exports: dict[str, int] = {}
        #: Where the image is mapped and how many bytes (0 and 0 when nothing is allocated).
        self.base_address = 0
        self.size = 0
        #: How many PLT32 calls went through a far-call stub (their target was over 2 GiB away).
        self.far_calls = 0
        parsed = _ParsedObject(obj)  # (malformed bytes are reported on every platform)
        if not NATIVE_LOADING_SUPPORTED:
            raise UnsupportedObject("native loading needs x86-64 Linux")
        try:
            self._load(parsed, resolve)
        except BaseException:
            self.close()
            raise

    @property
    def closed(self) -> bool:
        return self._mapping is None

    def close(self) -> None:
        """Unmap the image.  Idempotent; addresses from `exports` are invalid afterwards."""
        mapping, self._mapping = self._mapping, None
        self.exports = {}
        if mapping is not None:
            mapping.close()

    # -- loading -------------------------------------------------------------

    def _load(self, parsed: _ParsedObject, resolve: SymbolResolver) -> None:
        placement, region_sizes = self._place_sections(parsed)
        symbols = parsed.symbols
        for symbol in symbols:
            if symbol.kind == _STT_TLS:
                raise UnsupportedObject(f"thread-local symbol {symbol.name!r}")
            if symbol.section == _SHN_COMMON:
                raise UnsupportedObject(f"COMMON symbol {symbol.name!r}")
            if symbol.kind == _STT_GNU_IFUNC and symbol.section != _SHN_UNDEF:
                raise UnsupportedObject(f"IFUNC symbol {symbol.name!r}")
            if symbol.section >= _SHN_LORESERVE and symbol.section != _SHN_ABS:
                raise UnsupportedObject(f"symbol {symbol.name!r} in special section {symbol.section:#x}")

        # The private GOT and far-call stubs, sized before mapping: one GOT entry per symbol a
        # GOTPCREL relocation names, one stub per external function a PLT32 call names.
        got_symbols: dict[int, int] = {}
        stub_symbols: dict[int, int] = {}
        for target in placement:
            for relocation in parsed.relocations.get(target, ()):
                if relocation.kind in _GOT_RELOCATIONS:
                    got_symbols.setdefault(relocation.symbol, len(got_symbols))
                elif relocation.kind == _R_PLT32 and symbols[relocation.symbol].section == _SHN_UNDEF:
                    stub_symbols.setdefault(relocation.symbol, len(stub_symbols))
        stubs_at = _align_up(region_sizes[_CODE], _STUB_SIZE)
        region_sizes[_CODE] = stubs_at + _STUB_SIZE * len(stub_symbols)
        got_at = _align_up(region_sizes[_RODATA], _GOT_ENTRY_SIZE)
        region_sizes[_RODATA] = got_at + _GOT_ENTRY_SIZE * len(got_symbols)

        region_starts = [0, 0, 0]
        for region in (_RODATA, _DATA):
            region_starts[region] = region_starts[region - 1] + _align_up(region_sizes[region - 1], mmap.PAGESIZE)
        image_size = region_starts[_DATA] + _align_up(region_sizes[_DATA], mmap.PAGESIZE)
        if image_size > _MAX_IMAGE_SIZE:
            raise UnsupportedObject(f"image of {image_size} bytes")
        if image_size == 0:
            return  # nothing allocated: no code, nothing to export
        # Private: a forked child gets its own copy of writable data, as with MCJIT's memory.
        mapping = mmap.mmap(-1, image_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                            prot=_PROT_READ | _PROT_WRITE)
        self._mapping = mapping
        anchor = ctypes.c_char.from_buffer(mapping)
        base = ctypes.addressof(anchor)
        del anchor  # the mapping can only be closed once no buffer export remains
        self.base_address, self.size = base, image_size

        # Offsets of the sections within the image; .bss and padding stay as mmap zeroed them.
        section_at = {index: region_starts[region] + offset for index, (region, offset) in placement.items()}
        for index, at in section_at.items():
            section = parsed.sections[index]
            if section.kind == _SHT_PROGBITS and section.size:
                mapping[at:at + section.size] = parsed.section_bytes(index)

        addresses = self._symbol_addresses(parsed, section_at, base, resolve)
        got_base = base + region_starts[_RODATA] + got_at
        for symbol, slot in got_symbols.items():
            struct.pack_into("<Q", mapping, region_starts[_RODATA] + got_at + slot * _GOT_ENTRY_SIZE,
                             addresses[symbol] or 0)
        stubs_base = base + region_starts[_CODE] + stubs_at
        for symbol, slot in stub_symbols.items():
            at = region_starts[_CODE] + stubs_at + slot * _STUB_SIZE
            stub = _STUB_JUMP + struct.pack("<Q", addresses[symbol] or 0)
            mapping[at:at + _STUB_SIZE] = stub.ljust(_STUB_SIZE, b"\xcc")

        for target, at in section_at.items():
            for relocation in parsed.relocations.get(target, ()):
                self._apply(parsed, relocation, at, base, addresses,
                            got_base + _GOT_ENTRY_SIZE * got_symbols.get(relocation.symbol, 0),
                            stubs_base + _STUB_SIZE * stub_symbols.get(relocation.symbol, 0))

        # Write permission ends here, before anything can execute: code R+X, constants R.
        mprotect = _MprotectFunction.get()
        for region, prot in ((_CODE, _PROT_READ | _PROT_EXEC), (_RODATA, _PROT_READ)):
            length = region_starts[region + 1] - region_starts[region]
            if length and mprotect(base + region_starts[region], length, prot) != 0:
                raise UnsupportedObject(f"mprotect failed: errno {ctypes.get_errno()}")

        self.exports = {
            symbol.name: address
            for symbol, address in zip(symbols, addresses)
            if symbol.binding != _STB_LOCAL and symbol.name and symbol.section in section_at
        }

    @staticmethod
    def _place_sections(parsed: _ParsedObject) -> tuple[dict[int, tuple[int, int]], list[int]]:
        """Each allocated section's (region, offset within region), and each region's size."""
        placement: dict[int, tuple[int, int]] = {}
        sizes = [0, 0, 0]
        for index, section in enumerate(parsed.sections):
            if not section.flags & _SHF_ALLOC:
                continue
            name, kind, flags = section.name, section.kind, section.flags
            if kind == _SHT_X86_64_UNWIND or name == ".eh_frame":
                continue  # unwind tables: see the module docstring
            if kind == _SHT_NOTE:
                continue  # metadata for linkers (.note.gnu.property): nothing runs or reads it
            if (kind in (_SHT_INIT_ARRAY, _SHT_FINI_ARRAY, _SHT_PREINIT_ARRAY)
                    or name.startswith(_CONSTRUCTOR_SECTION_PREFIXES) or name in _CONSTRUCTOR_SECTION_NAMES):
                # MCJIT loads these as plain data and runs nothing either: an error, not a fallback.
                raise UnsupportedObject(f"section {name}: static constructors or destructors",
                                        mcjit_can_load=False)
            if flags & _SHF_TLS:
                raise UnsupportedObject(f"thread-local section {name}")
            if kind not in (_SHT_PROGBITS, _SHT_NOBITS):
                raise UnsupportedObject(f"allocated section {name} of kind {kind:#x}")
            if flags & _SHF_WRITE and flags & _SHF_EXECINSTR:
                raise UnsupportedObject(f"section {name} is writable and executable")
            align = max(section.align, 1)
            if align & (align - 1):
                raise MalformedObjectError(f"section {name} aligned to {align}, not a power of two")
            if align > mmap.PAGESIZE:
                raise UnsupportedObject(f"section {name} aligned to {align} bytes")
            if section.size >= _ADDRESS_SPACE:
                raise MalformedObjectError(f"section {name} of {section.size} bytes")
            if section.size > _MAX_IMAGE_SIZE:
                raise UnsupportedObject(f"section {name} of {section.size} bytes")
            region = _CODE if flags & _SHF_EXECINSTR else _DATA if flags & _SHF_WRITE else _RODATA
            offset = _align_up(sizes[region], align)
            placement[index] = (region, offset)
            sizes[region] = offset + section.size
        return placement, sizes

    @staticmethod
    def _symbol_addresses(parsed: _ParsedObject, section_at: dict[int, int], base: int,
                          resolve: SymbolResolver) -> list[int | None]:
        """Each symbol's address; None for one defined in a section that is not loaded."""
        addresses: list[int | None] = []
        unresolved: list[str] = []
        for position, symbol in enumerate(parsed.symbols):
            if symbol.section == _SHN_UNDEF:
                if not position:
                    address = 0  # the null symbol
                elif _is_utf8(symbol.name):
                    address = resolve(symbol.name)
                else:
                    address = None  # no C library can look up a name that is not text
                if address is None:
                    if symbol.binding != _STB_WEAK:
                        unresolved.append(symbol.name)
                    address = 0  # an undefined weak symbol is null
            elif symbol.section == _SHN_ABS:
                address = symbol.value
            elif symbol.section in section_at:
                address = base + section_at[symbol.section] + symbol.value
            else:
                address = None  # in .eh_frame or debug info
            addresses.append(address)
        if unresolved:
            raise UnsupportedObject(f"symbols not found without LLVM: {', '.join(unresolved)}",
                                    unresolved=tuple(unresolved))
        return addresses

    def _apply(self, parsed: _ParsedObject, relocation: _Relocation, section_at: int, base: int,
               addresses: list[int | None], got_entry: int, stub: int) -> None:
        """Patch one relocation (S: symbol, A: addend, P: place, as in the psABI)."""
        kind = relocation.kind
        if kind == _R_NONE:
            return
        name = _RELOCATION_NAMES.get(kind)
        if name is None:
            raise UnsupportedObject(f"relocation type {kind}")
        symbol = parsed.symbols[relocation.symbol]
        target = addresses[relocation.symbol]
        if target is None:
            raise UnsupportedObject(f"{name} against {symbol.name or 'a symbol'} in a section that is not loaded")
        at = section_at + relocation.offset
        place = base + at
        if kind in _GOT_RELOCATIONS:
            target = got_entry  # (the GOT entry holds S; the instruction is not relaxed)
        if kind == _R_64:
            struct.pack_into("<Q", self._mapping, at, (target + relocation.addend) & 0xFFFFFFFFFFFFFFFF)
            return
        if kind == _R_PC64:
            struct.pack_into("<Q", self._mapping, at, (target + relocation.addend - place) & 0xFFFFFFFFFFFFFFFF)
            return
        if kind == _R_32:
            value, low, high = target + relocation.addend, 0, 2**32
        elif kind == _R_32S:
            value, low, high = target + relocation.addend, -2**31, 2**31
        else:  # PC32, PLT32 and the GOTPCREL family: a signed 32-bit displacement
            value, low, high = target + relocation.addend - place, -2**31, 2**31
            if not low <= value < high and kind == _R_PLT32 and symbol.section == _SHN_UNDEF:
                value = stub + relocation.addend - place  # a call to a far function: via its stub
                self.far_calls += 1
        if not low <= value < high:
            raise UnsupportedObject(f"{name} to {symbol.name or 'a section'} out of 32-bit range")
        struct.pack_into("<I" if kind == _R_32 else "<i", self._mapping, at, value)
