#!/usr/bin/env python3
"""Extract the launch flags moeplan emits from an inference engine's released source.

Usage:
    python3 tools/engine_flags.py ENGINE SOURCE_DIR --version V \
        (--wheel WHEEL [--commit SHA] | --commit SHA [--unreleased]) \
        > crates/moeplan/engines/flags/ENGINE/V.toml

ENGINE is one of: vllm, sglang, trtllm, dynamo.  One file per (engine, version):
moeplan embeds every file of crates/moeplan/engines/flags/<engine>/ (build.rs),
so adding a version is adding its file.  Provenance: --wheel records the PyPI
wheel's file name and SHA-256 (the unpacked wheel is SOURCE_DIR); --commit the
source commit (7 to 40 hex digits: a wheel's own _version.py may give only a
short one); --unreleased marks a table read from a branch, not a release (then
Kubernetes targets ask for an explicit image).  SOURCE_DIR is a checkout, an extracted
release tarball, or an unpacked wheel of that engine (the package may sit at the
root or under python/).  The argument definitions are read with the `ast` module;
nothing from the engine is imported or executed, and no network is used.

What is read:
  vllm    vllm/engine/arg_utils.py (EngineArgs.add_cli_args: add_argument calls
          whose kwargs come from get_kwargs(<Config dataclass>), resolved to the
          dataclass field's annotation in vllm/config/*.py, plus explicit
          add_argument calls) and vllm/entrypoints/openai/cli_args.py
          (make_arg_parser, and the FrontendArgs dataclass fields, each of which
          becomes --field-name).
  sglang  python/sglang/srt/server_args.py (ServerArgs.add_cli_args).
  bench   each engine's benchmark client, keyed "bench --flag": vLLM's
          `vllm bench serve` (vllm/benchmarks/serve.py and datasets.py),
          SGLang's `python -m sglang.bench_serving` (sglang/bench_serving.py):
          every add_argument call of those files.
  dynamo  ai-dynamo's worker wrappers: dynamo/vllm/args.py (parse_args),
          dynamo/sglang/args.py (DYNAMO_ARGS and parse_args),
          dynamo/trtllm/utils/trtllm_utils.py (cmd_line_args); keyed
          "dynamo.<engine> --flag".  dynamo.vllm and dynamo.sglang also take
          their engine's own flags (checked against that engine's table).
          The engine release each runtime pins (the wheel's METADATA,
          `Requires-Dist: vllm==V; extra == 'vllm'`) is the [bundles] table.
  trtllm  tensorrt_llm/commands/serve.py (click options of each click.command;
          `trtllm-serve MODEL` runs the "serve" command, other commands are keyed
          "COMMAND --flag") and tensorrt_llm/llmapi/llm_args.py (pydantic fields
          of TorchLlmArgs and its bases, followed into nested config classes for
          dotted YAML keys such as moe_config.backend).

Kinds written to the table:
  int, float, string  the flag takes one value of that type
  json                a JSON object (vLLM config dataclasses, dict fields) or, for
                      a TensorRT-LLM YAML key, a nested mapping
  switch              takes no value (store_true / BooleanOptionalAction / click
                      is_flag); for a TensorRT-LLM YAML key: a boolean
  choice              one of `choices`, listed in source order

A JSON flag read from a vLLM config dataclass also lists `fields`: the keys
of that class moeplan may write (WANTED_FIELDS), those the release has.  An
environment variable moeplan may set (vLLM's VLLM_ALL2ALL_BACKEND, read from
vllm/envs.py) is an [[env]] entry.

The lists of flags and keys to extract are constants below (WANTED).  When one
of them is not found in the source the script exits 1 naming it, so rerunning it
on a new release shows what moved.  Entries in OPTIONAL may be absent (they are
then left out of the table with a comment); of each ONE_OF group at least one
must be present (two spellings of one setting across releases: moeplan emits
the one the table holds); --allow-missing NAME acknowledges a flag that a
release is known to lack.
"""

import argparse
import ast
import os
import re
import sys

REPOSITORIES = {
    "vllm": "vllm-project/vllm",
    "sglang": "sgl-project/sglang",
    "trtllm": "NVIDIA/TensorRT-LLM",
    "dynamo": "ai-dynamo/dynamo",
}

# The flags (and TensorRT-LLM YAML keys) moeplan emits.  Keyed by the long name
# moeplan uses, even where the engine also accepts an alias.
WANTED = {
    "vllm": {
        "flags": [
            "--tensor-parallel-size",
            "--pipeline-parallel-size",
            "--data-parallel-size",
            "--data-parallel-size-local",
            "--data-parallel-start-rank",
            "--data-parallel-address",
            "--data-parallel-rpc-port",
            "--headless",
            "--enable-expert-parallel",
            "--all2all-backend",
            "--enable-eplb",
            "--eplb-config",
            "--gpu-memory-utilization",
            "--max-num-seqs",
            "--max-num-batched-tokens",
            "--max-model-len",
            "--kv-cache-dtype",
            "--kv-transfer-config",
            "--compilation-config",
            "--nnodes",
            "--node-rank",
            "--master-addr",
            "--master-port",
            "--distributed-executor-backend",
            "--host",
            "--port",
            "--served-model-name",
            "--trust-remote-code",
            "--model",
            "bench --backend",
            "bench --base-url",
            "bench --model",
            "bench --dataset-name",
            "bench --random-input-len",
            "bench --random-output-len",
            "bench --random-range-ratio",
            "bench --max-concurrency",
            "bench --num-prompts",
            "bench --ignore-eos",
            "bench --save-result",
            "bench --result-filename",
        ],
        "keys": [],
        "env": ["VLLM_ALL2ALL_BACKEND"],
    },
    "sglang": {
        "flags": [
            "--model-path",
            "--tp-size",
            "--pp-size",
            "--dp-size",
            "--enable-dp-attention",
            "--ep-size",
            "--moe-a2a-backend",
            "--enable-deepep-moe",
            "--deepep-mode",
            "--enable-eplb",
            "--ep-num-redundant-experts",
            "--mem-fraction-static",
            "--max-running-requests",
            "--chunked-prefill-size",
            "--context-length",
            "--kv-cache-dtype",
            "--cuda-graph-max-bs",
            "--nnodes",
            "--node-rank",
            "--dist-init-addr",
            "--disaggregation-mode",
            "--disaggregation-transfer-backend",
            "--host",
            "--port",
            "--served-model-name",
            "--trust-remote-code",
            "bench --backend",
            "bench --base-url",
            "bench --model",
            "bench --dataset-name",
            "bench --random-input-len",
            "bench --random-output-len",
            "bench --random-range-ratio",
            "bench --max-concurrency",
            "bench --num-prompts",
            "bench --output-file",
        ],
        "keys": [],
        "env": [],
    },
    "trtllm": {
        "flags": [
            "--tp_size",
            "--pp_size",
            "--ep_size",
            "--max_batch_size",
            "--max_num_tokens",
            "--max_seq_len",
            "--kv_cache_free_gpu_memory_fraction",
            "--extra_llm_api_options",
            "--config",
            "--host",
            "--port",
            "--backend",
            "--trust_remote_code",
            "disaggregated --config_file",
        ],
        "keys": [
            "tensor_parallel_size",
            "pipeline_parallel_size",
            "max_batch_size",
            "max_num_tokens",
            "max_seq_len",
            "enable_attention_dp",
            "moe_expert_parallel_size",
            "moe_tensor_parallel_size",
            "moe_config.backend",
            "moe_config.load_balancer",
            "kv_cache_config.dtype",
            "kv_cache_config.free_gpu_memory_fraction",
            "cuda_graph_config.max_batch_size",
            "cuda_graph_config.enable_padding",
            "cache_transceiver_config.backend",
            "cache_transceiver_config.max_tokens_in_buffer",
            "enable_chunked_prefill",
        ],
        "env": [],
    },
    "dynamo": {
        "flags": [
            "dynamo.vllm --is-prefill-worker",
            "dynamo.vllm --is-decode-worker",
            "dynamo.trtllm --model-path",
            "dynamo.trtllm --extra-engine-args",
            "dynamo.trtllm --disaggregation-mode",
        ],
        "keys": [],
        "env": [],
    },
}

# The keys moeplan may write inside a JSON flag (vLLM config dataclasses).
WANTED_FIELDS = {
    "vllm": {
        "--compilation-config": ["max_cudagraph_capture_size", "cudagraph_capture_sizes"],
        "--eplb-config": ["num_redundant_experts"],
        "--kv-transfer-config": ["kv_connector", "kv_role"],
    },
}

# May be absent from a release without failing the run (newer aliases /
# optional subcommands).
OPTIONAL = {
    # A TP/PP group over nodes: vLLM's own node ranks from 0.11.1; before, only
    # on a Ray cluster (--distributed-executor-backend ray), which moeplan writes.
    "vllm": {"--nnodes", "--node-rank", "--master-addr", "--master-port"},
    "sglang": set(),
    "trtllm": {"--config", "disaggregated --config_file"},
    "dynamo": set(),
}

# Two spellings of one setting across releases: each may be absent, not both.
ONE_OF = {
    "vllm": [
        # the all-to-all backend: a flag from 0.11.1, an environment variable before
        ("--all2all-backend", "VLLM_ALL2ALL_BACKEND"),
    ],
    "sglang": [
        # DeepEP: --moe-a2a-backend deepep from 0.4.10, --enable-deepep-moe before
        ("--moe-a2a-backend", "--enable-deepep-moe"),
    ],
    "trtllm": [],
    "dynamo": [],
}

HEADER = "# Generated by tools/engine_flags.py from the released source; do not edit by hand."


class ExtractError(Exception):
    pass


# --------------------------------------------------------------------------
# Source tree and name resolution
# --------------------------------------------------------------------------

class Tree:
    """A source checkout; parses files on demand and resolves imported names."""

    def __init__(self, root, prefixes):
        self.root = root
        self.prefixes = prefixes
        self.cache = {}
        self.read = set()

    def exists(self, rel):
        return os.path.isfile(os.path.join(self.root, rel))

    def locate(self, module_rel):
        """Repository-relative path of a package-relative file, e.g.
        'sglang/srt/server_args.py' -> 'python/sglang/srt/server_args.py'."""
        for prefix in self.prefixes:
            rel = os.path.join(prefix, module_rel) if prefix else module_rel
            if self.exists(rel):
                return rel
        return None

    def require(self, module_rel):
        rel = self.locate(module_rel)
        if rel is None:
            raise ExtractError(
                "source file not found: %s (looked under %s)"
                % (module_rel, ", ".join(p or "." for p in self.prefixes)))
        return rel

    def parse(self, rel):
        if rel not in self.cache:
            path = os.path.join(self.root, rel)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            try:
                self.cache[rel] = ast.parse(text, filename=rel)
            except SyntaxError as e:
                raise ExtractError("cannot parse %s: %s" % (rel, e))
            self.read.add(rel)
        return self.cache[rel]

    def module_file(self, modname):
        parts = modname.split(".")
        for candidate in (os.path.join(*parts) + ".py",
                          os.path.join(*(parts + ["__init__.py"]))):
            rel = self.locate(candidate)
            if rel is not None:
                return rel
        return None

    def module_name(self, rel):
        for prefix in self.prefixes:
            if prefix and rel.startswith(prefix + os.sep):
                rel = rel[len(prefix) + 1:]
                break
        if rel.endswith(os.sep + "__init__.py"):
            rel = rel[: -len(os.sep + "__init__.py")]
            is_pkg = True
        else:
            rel = rel[:-3]
            is_pkg = False
        return rel.replace(os.sep, "."), is_pkg

    def import_target(self, rel, node):
        """The module an ImportFrom statement in `rel` refers to."""
        if node.level == 0:
            return node.module
        modname, is_pkg = self.module_name(rel)
        parts = modname.split(".")
        drop = node.level - 1 if is_pkg else node.level
        base = parts[: len(parts) - drop] if drop else parts
        if node.module:
            base = base + node.module.split(".")
        return ".".join(base)

    def lookup(self, rel, name, _seen=None):
        """Find the definition of top-level `name` as seen from module `rel`.

        Returns (rel, node) where node is a ClassDef, FunctionDef, Assign or
        AnnAssign, following `from x import y` chains inside the tree; None when
        the name is defined outside the tree (a third-party package)."""
        if _seen is None:
            _seen = set()
        if (rel, name) in _seen:
            return None
        _seen.add((rel, name))
        module = self.parse(rel)
        found = []
        for stmt in _top_level(module.body):
            if isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                if stmt.name == name:
                    found.append((rel, stmt))
            elif isinstance(stmt, ast.Assign):
                if any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
                    found.append((rel, stmt))
            elif isinstance(stmt, ast.AnnAssign):
                if isinstance(stmt.target, ast.Name) and stmt.target.id == name:
                    found.append((rel, stmt))
            elif isinstance(stmt, ast.ImportFrom):
                for alias in stmt.names:
                    if (alias.asname or alias.name) == name:
                        target = self.import_target(rel, stmt)
                        target_rel = self.module_file(target) if target else None
                        if target_rel is not None:
                            hit = self.lookup(target_rel, alias.name, _seen)
                            if hit is not None:
                                found.append(hit)
        # Prefer a class or function over a fallback assignment
        # (e.g. `if TYPE_CHECKING: from x import C` / `else: C = Any`).
        for hit in found:
            if isinstance(hit[1], (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                return hit
        return found[0] if found else None


def _top_level(body):
    """Top-level statements, looking inside if/try blocks."""
    for stmt in body:
        if isinstance(stmt, ast.If):
            yield from _top_level(stmt.body)
            yield from _top_level(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            yield from _top_level(stmt.body)
            for handler in stmt.handlers:
                yield from _top_level(handler.body)
            yield from _top_level(stmt.orelse)
            yield from _top_level(stmt.finalbody)
        else:
            yield stmt


def dotted(node):
    """'a.b.c' for Name/Attribute chains, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return base + "." + node.attr if base else None
    return None


def last_name(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def find_class(tree, rel, name):
    module = tree.parse(rel)
    for stmt in _top_level(module.body):
        if isinstance(stmt, ast.ClassDef) and stmt.name == name:
            return stmt
    return None


def find_method(cls, name):
    for stmt in cls.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
            return stmt
    return None


def find_function(tree, rel, name):
    module = tree.parse(rel)
    for stmt in _top_level(module.body):
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
            return stmt
    return None


# --------------------------------------------------------------------------
# Static evaluation of constants (choices lists)
# --------------------------------------------------------------------------

def const_list(tree, rel, node, _depth=0):
    """Evaluate a list of constants: a literal list/tuple/set, a module-level
    constant, `A + B`, `list(X)`, `sorted(X)` or `X.keys()` of a dict literal.
    Returns None when the value is only known at run time."""
    if _depth > 10:
        return None
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        out = []
        for elt in node.elts:
            if isinstance(elt, ast.Constant):
                out.append(elt.value)
            elif isinstance(elt, ast.Starred):
                sub = const_list(tree, rel, elt.value, _depth + 1)
                if sub is None:
                    return None
                out.extend(sub)
            else:
                return None
        return out
    if isinstance(node, ast.Dict):
        out = []
        for key in node.keys:
            if not isinstance(key, ast.Constant):
                return None
            out.append(key.value)
        return out
    if isinstance(node, ast.ListComp) and len(node.generators) == 1:
        # [m.value for m in SomeEnum]
        gen = node.generators[0]
        if isinstance(gen.iter, ast.Name) and isinstance(node.elt, ast.Attribute) \
                and node.elt.attr == "value" and isinstance(node.elt.value, ast.Name) \
                and isinstance(gen.target, ast.Name) and node.elt.value.id == gen.target.id:
            hit = tree.lookup(rel, gen.iter.id)
            if hit is not None and isinstance(hit[1], ast.ClassDef):
                return enum_values(hit[1])
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left = const_list(tree, rel, node.left, _depth + 1)
        right = const_list(tree, rel, node.right, _depth + 1)
        if left is None or right is None:
            return None
        return left + right
    if isinstance(node, ast.Call):
        fname = dotted(node.func)
        if fname in ("list", "tuple", "sorted") and len(node.args) == 1:
            vals = const_list(tree, rel, node.args[0], _depth + 1)
            if vals is not None and fname == "sorted":
                vals = sorted(vals)
            return vals
        if isinstance(node.func, ast.Attribute) and node.func.attr == "keys":
            return const_list(tree, rel, node.func.value, _depth + 1)
        return None
    if isinstance(node, ast.Name):
        hit = tree.lookup(rel, node.id)
        if hit is None:
            return None
        hit_rel, stmt = hit
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            return const_list(tree, hit_rel, stmt.value, _depth + 1)
        return None
    return None


# --------------------------------------------------------------------------
# Type annotations
# --------------------------------------------------------------------------

BUILTIN_TYPES = {
    "int": "int", "float": "float", "str": "str", "bool": "bool",
    "dict": "dict", "Dict": "dict", "Mapping": "dict", "MutableMapping": "dict",
    "object": "any", "Any": "any", "bytes": "str",
    # pydantic / pathlib scalars, when not resolvable inside the tree
    "NonNegativeInt": "int", "PositiveInt": "int", "NegativeInt": "int",
    "NonPositiveInt": "int", "StrictInt": "int", "conint": "int",
    "NonNegativeFloat": "float", "PositiveFloat": "float", "StrictFloat": "float",
    "confloat": "float", "StrictStr": "str", "constr": "str", "StrictBool": "bool",
    "Path": "str", "PathLike": "str",
}
COLLECTIONS = {"list", "List", "Sequence", "tuple", "Tuple", "set", "Set",
               "frozenset", "FrozenSet", "Iterable"}
OPAQUE = {"type", "Type", "Callable"}


class Atom:
    """One alternative of a (possibly union) type annotation."""

    def __init__(self, kind, value=None, rel=None, node=None, elems=None):
        self.kind = kind      # builtin | literal | class | list | none | other | classvar
        self.value = value    # builtin name, literal values, or other's text
        self.rel = rel
        self.node = node
        self.elems = elems or []

    def __repr__(self):
        if self.kind == "class":
            return "class:%s" % self.node.name
        if self.kind == "list":
            return "list[%r]" % self.elems
        return "%s:%r" % (self.kind, self.value)


def type_atoms(tree, rel, expr, _depth=0):
    if _depth > 20:
        return [Atom("other", "<deep>")]
    if expr is None:
        return [Atom("other", "<none>")]
    if isinstance(expr, ast.Constant):
        if expr.value is None:
            return [Atom("none")]
        if isinstance(expr.value, str):  # forward reference
            try:
                inner = ast.parse(expr.value, mode="eval").body
            except SyntaxError:
                return [Atom("other", expr.value)]
            return type_atoms(tree, rel, inner, _depth + 1)
        return [Atom("other", repr(expr.value))]
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.BitOr):
        return (type_atoms(tree, rel, expr.left, _depth + 1)
                + type_atoms(tree, rel, expr.right, _depth + 1))
    if isinstance(expr, ast.Subscript):
        base = last_name(expr.value)
        sl = expr.slice
        if isinstance(sl, ast.Index):  # Python < 3.9 ast
            sl = sl.value
        args = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]
        if base == "Literal":
            values = []
            for arg in args:
                if isinstance(arg, ast.Constant):
                    values.append(arg.value)
                else:
                    for atom in type_atoms(tree, rel, arg, _depth + 1):
                        if atom.kind == "literal":
                            values.extend(atom.value)
                        else:
                            values.append(dotted(arg) or "<expr>")
            return [Atom("literal", values)]
        if base == "Optional":
            return type_atoms(tree, rel, args[0], _depth + 1) + [Atom("none")]
        if base == "Union":
            out = []
            for arg in args:
                out.extend(type_atoms(tree, rel, arg, _depth + 1))
            return out
        if base == "Annotated":
            return type_atoms(tree, rel, args[0], _depth + 1)
        if base == "ClassVar":
            return [Atom("classvar")]
        if base in COLLECTIONS:
            elems = []
            for arg in args:
                if isinstance(arg, ast.Constant) and arg.value is Ellipsis:
                    continue
                elems.extend(type_atoms(tree, rel, arg, _depth + 1))
            return [Atom("list", elems=elems)]
        if base in BUILTIN_TYPES:
            return [Atom("builtin", BUILTIN_TYPES[base])]
        if base in OPAQUE:
            return [Atom("other", base)]
        return type_atoms(tree, rel, expr.value, _depth + 1)
    if isinstance(expr, (ast.Name, ast.Attribute)):
        name = last_name(expr)
        if name == "None":
            return [Atom("none")]
        if isinstance(expr, ast.Name) and name not in BUILTIN_TYPES:
            hit = tree.lookup(rel, name)
            if hit is not None:
                hit_rel, stmt = hit
                if isinstance(stmt, ast.ClassDef):
                    return [Atom("class", rel=hit_rel, node=stmt)]
                if isinstance(stmt, ast.Assign) and stmt.value is not None:
                    return type_atoms(tree, hit_rel, stmt.value, _depth + 1)
                if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                    return type_atoms(tree, hit_rel, stmt.value, _depth + 1)
                return [Atom("other", name)]
        if name in BUILTIN_TYPES:
            return [Atom("builtin", BUILTIN_TYPES[name])]
        return [Atom("other", dotted(expr) or name)]
    return [Atom("other", type(expr).__name__)]


def builtins_of(atoms):
    return {a.value for a in atoms if a.kind == "builtin"}


def literal_values(atoms):
    out = []
    for a in atoms:
        if a.kind == "literal":
            for v in a.value:
                if v not in out:
                    out.append(v)
    return out


def decorator_names(cls):
    names = set()
    for dec in cls.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        name = last_name(target)
        if name:
            names.add(name)
    return names


def is_config_dataclass(atom):
    """vLLM: a @config / @dataclass decorated class (parsed from JSON on the CLI)."""
    return atom.kind == "class" and bool(decorator_names(atom.node) & {"config", "dataclass"})


def class_bases(tree, rel, cls):
    out = []
    for base in cls.bases:
        name = last_name(base)
        if isinstance(base, ast.Subscript):
            name = last_name(base.value)
        if not name:
            continue
        hit = tree.lookup(rel, name) if isinstance(base, ast.Name) or isinstance(base, ast.Subscript) else None
        if hit is not None and isinstance(hit[1], ast.ClassDef):
            out.append((hit[0], hit[1]))
        else:
            out.append((None, name))
    return out


def is_enum_class(tree, rel, cls, _depth=0):
    if _depth > 10:
        return False
    for base_rel, base in class_bases(tree, rel, cls):
        if base_rel is None:
            if base in ("Enum", "StrEnum", "IntEnum", "Flag", "IntFlag"):
                return True
        elif is_enum_class(tree, base_rel, base, _depth + 1):
            return True
    return False


def enum_values(cls):
    out = []
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
                and isinstance(stmt.targets[0], ast.Name) \
                and not stmt.targets[0].id.startswith("_") \
                and isinstance(stmt.value, ast.Constant):
            out.append(stmt.value.value)
    return out


def class_fields(tree, rel, cls, _depth=0):
    """name -> (rel, owner class name, annotation) for annotated class-body
    fields, bases first so that subclasses override."""
    fields = {}
    if _depth > 10:
        return fields
    for base_rel, base in class_bases(tree, rel, cls):
        if base_rel is not None:
            fields.update(class_fields(tree, base_rel, base, _depth + 1))
    for stmt in cls.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            name = stmt.target.id
            ann_base = stmt.annotation
            if isinstance(ann_base, ast.Subscript) and last_name(ann_base.value) == "ClassVar":
                continue
            if last_name(ann_base) == "ClassVar":
                continue
            fields[name] = (rel, cls.name, stmt.annotation)
    return fields


# --------------------------------------------------------------------------
# Kind rules
# --------------------------------------------------------------------------

def vllm_field_kind(tree, atoms):
    """Mirror vllm.engine.arg_utils._compute_kwargs: dataclass -> JSON,
    bool -> --x/--no-x, Literal -> choices (free text when str is also
    allowed), collections -> element type (nargs), int, float, dict -> JSON,
    anything else -> str."""
    names = builtins_of(atoms)
    if any(is_config_dataclass(a) for a in atoms):
        return "json", []
    if "bool" in names:
        return "switch", []
    lits = literal_values(atoms)
    if lits:
        if "str" in names:
            return "string", []
        return "choice", [str(v) for v in lits]
    for a in atoms:
        if a.kind == "list":
            return vllm_field_kind(tree, a.elems)
    if "int" in names:
        return "int", []
    if "float" in names:
        return "float", []
    if "dict" in names:
        return "json", []
    return "string", []


def yaml_field_kind(tree, atoms):
    """TensorRT-LLM pydantic field as a YAML value."""
    names = builtins_of(atoms)
    lits = literal_values(atoms)
    classes = [a for a in atoms if a.kind == "class"]
    enums = [a for a in classes if is_enum_class(tree, a.rel, a.node)]
    models = [a for a in classes if a not in enums]
    if "bool" in names and not (models or lits or enums):
        return "switch", []
    if lits and not models:
        if "str" in names:
            return "string", []
        return "choice", [str(v) for v in lits]
    if enums and not models and "str" not in names:
        values = []
        for e in enums:
            values.extend(str(v) for v in enum_values(e.node))
        return "choice", values
    if models or "dict" in names or "any" in names or any(a.kind == "list" for a in atoms):
        return "json", []
    if "int" in names:
        return "int", []
    if "float" in names:
        return "float", []
    return "string", []


def callable_kind(tree, rel, node, _depth=0):
    """Kind of an argparse `type=` callable."""
    if _depth > 5:
        return "string"
    name = dotted(node)
    if name in ("int",):
        return "int"
    if name in ("float",):
        return "float"
    if name in ("str",):
        return "string"
    if name in ("json.loads",):
        return "json"
    if isinstance(node, ast.Call):
        # wrappers such as optional_type(json.loads) / parse_type(int)
        for arg in node.args:
            kind = callable_kind(tree, rel, arg, _depth + 1)
            if kind != "string":
                return kind
        return "string"
    if isinstance(node, ast.Name):
        hit = tree.lookup(rel, node.id)
        if hit is not None and isinstance(hit[1], (ast.FunctionDef, ast.AsyncFunctionDef)):
            returns = hit[1].returns
            if returns is not None:
                atoms = [a for a in type_atoms(tree, hit[0], returns) if a.kind != "none"]
                names = builtins_of(atoms)
                if "dict" in names or "any" in names:
                    return "json"
                if names == {"int"}:
                    return "int"
                if names == {"float"}:
                    return "float"
        return "string"
    return "string"


# --------------------------------------------------------------------------
# argparse (vLLM, SGLang)
# --------------------------------------------------------------------------

SWITCH_ACTIONS = {"store_true", "store_false", "store_const",
                  "BooleanOptionalAction", "argparse.BooleanOptionalAction"}


class Entry:
    """A flag (or YAML key) found in the source.  Its kind is worked out lazily,
    so that only the files needed for the wanted flags are read."""

    def __init__(self, names, resolver):
        self.names = names
        self._resolver = resolver
        self._done = False
        self.kind = None
        self.choices = []
        self.source = None
        self.fields = None  # a JSON flag's dataclass fields (vLLM), when known
        self.error = None  # why the kind could not be determined statically

    def resolve(self):
        if not self._done:
            self._done = True
            try:
                found = self._resolver()
                self.kind, self.choices, self.source = found[:3]
                if len(found) > 3:
                    self.fields = found[3]
            except ExtractError as e:
                self.error = str(e)
        return self


def fixed(kind, choices, source):
    return lambda: (kind, choices, source)


def argparse_entries(tree, rel, func, qualname):
    """Entries for every `*.add_argument("--flag", ...)` call inside `func`."""
    kwargs_vars = {}   # var -> config class name (from `var = get_kwargs(Class)`)
    overrides = {}     # (var, field) -> {kwarg: expr}  (`var["field"]["type"] = ...`)
    field_alias = {}   # var -> (kwargs var, field)     (`x = var["field"]`)
    for node in ast.walk(func):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            value = node.value
            if isinstance(target, ast.Name) and isinstance(value, ast.Call) \
                    and last_name(value.func) == "get_kwargs" and value.args \
                    and isinstance(value.args[0], ast.Name):
                kwargs_vars[target.id] = value.args[0].id
            elif isinstance(target, ast.Name) and isinstance(value, ast.Subscript) \
                    and isinstance(value.value, ast.Name) \
                    and isinstance(_subscript_key(value), str):
                field_alias[target.id] = (value.value.id, _subscript_key(value))
            elif isinstance(target, ast.Subscript) and isinstance(_subscript_key(target), str):
                inner = target.value
                if isinstance(inner, ast.Subscript) and isinstance(inner.value, ast.Name) \
                        and isinstance(_subscript_key(inner), str):
                    key = (inner.value.id, _subscript_key(inner))
                    overrides.setdefault(key, {})[_subscript_key(target)] = value
                elif isinstance(inner, ast.Name) and inner.id in field_alias:
                    key = field_alias[inner.id]
                    overrides.setdefault(key, {})[_subscript_key(target)] = value

    entries = []
    for node in ast.walk(func):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument"):
            continue
        names = [a.value for a in node.args
                 if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if not names or not names[0].startswith("-"):
            continue
        explicit = {}
        field_ref = None
        for kw in node.keywords:
            if kw.arg is not None:
                explicit[kw.arg] = kw.value
                continue
            ref = _kwargs_ref(kw.value, field_alias)
            if ref is not None:
                field_ref = ref
            if isinstance(kw.value, ast.Dict):
                for key, value in zip(kw.value.keys, kw.value.values):
                    if key is None:
                        ref = _kwargs_ref(value, field_alias)
                        if ref is not None:
                            field_ref = ref
                    elif isinstance(key, ast.Constant) and isinstance(key.value, str):
                        explicit[key.value] = value
        if field_ref is not None:
            for k, v in overrides.get(field_ref, {}).items():
                explicit.setdefault(k, v)
        entries.append(Entry(names, _argparse_resolver(
            tree, rel, qualname, names, explicit, field_ref, kwargs_vars)))
    return entries


def _argparse_resolver(tree, rel, qualname, names, explicit, field_ref, kwargs_vars):
    long_names = [n for n in names if n.startswith("--")] or names

    def resolve():
        kind, choices, json_fields = None, [], None
        if field_ref is not None:
            var, field = field_ref
            if var not in kwargs_vars:
                raise ExtractError("%s: %s: cannot resolve its kwargs %s[%r]"
                                   % (rel, qualname, var, field))
            hit = tree.lookup(rel, kwargs_vars[var])
            if hit is None or not isinstance(hit[1], ast.ClassDef):
                raise ExtractError("%s: class %s not found" % (rel, kwargs_vars[var]))
            cls_rel, cls = hit
            fields = class_fields(tree, cls_rel, cls)
            if field not in fields:
                raise ExtractError("%s refers to %s.%s, which is not a field"
                                   % (long_names[0], cls.name, field))
            f_rel, owner, ann = fields[field]
            atoms = type_atoms(tree, f_rel, ann)
            kind, choices = vllm_field_kind(tree, atoms)
            source = "%s: %s.%s" % (f_rel, owner, field)
            dataclasses = [a for a in atoms if is_config_dataclass(a)]
            if dataclasses:
                json_fields = list(class_fields(tree, dataclasses[0].rel, dataclasses[0].node))
        else:
            source = "%s: %s add_argument(%s)" % (rel, qualname, long_names[0])
        kind, choices = _apply_explicit(tree, rel, explicit, kind, choices, long_names[0])
        return kind, choices, source, json_fields
    return resolve


def _subscript_key(node):
    sl = node.slice
    if isinstance(sl, ast.Index):  # Python < 3.9 ast
        sl = sl.value
    if isinstance(sl, ast.Constant):
        return sl.value
    return None


def _kwargs_ref(node, field_alias):
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        key = _subscript_key(node)
        if isinstance(key, str):
            return (node.value.id, key)
    if isinstance(node, ast.Name) and node.id in field_alias:
        return field_alias[node.id]
    return None


def _apply_explicit(tree, rel, explicit, kind, choices, flag):
    action = explicit.get("action")
    if action is not None:
        action_name = action.value if isinstance(action, ast.Constant) else dotted(action)
        if action_name in SWITCH_ACTIONS:
            return "switch", []
        if action_name in ("append", "extend") and "type" not in explicit and kind is None:
            return "string", []
    if "choices" in explicit:
        values = const_list(tree, rel, explicit["choices"])
        if values is None:
            raise ExtractError("%s: choices of %s are not static" % (rel, flag))
        return "choice", [str(v) for v in values]
    if "type" in explicit:
        return callable_kind(tree, rel, explicit["type"]), []
    if kind is None:
        return "string", []
    return kind, choices


def dataclass_flag_entries(tree, rel, cls):
    """vLLM FrontendArgs-style classes: each field becomes --field-name."""
    entries = []
    for name, (f_rel, owner, ann) in class_fields(tree, rel, cls).items():
        def resolve(f_rel=f_rel, owner=owner, ann=ann, name=name):
            kind, choices = vllm_field_kind(tree, type_atoms(tree, f_rel, ann))
            return kind, choices, "%s: %s.%s" % (f_rel, owner, name)
        entries.append(Entry(["--" + name.replace("_", "-")], resolve))
    return entries


# --------------------------------------------------------------------------
# click (TensorRT-LLM)
# --------------------------------------------------------------------------

def click_entries(tree, rel):
    module = tree.parse(rel)
    entries = []
    for stmt in _top_level(module.body):
        if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        command = None
        options = []
        for dec in stmt.decorator_list:
            if not isinstance(dec, ast.Call):
                continue
            fname = dotted(dec.func) or ""
            if fname.endswith("command"):
                if dec.args and isinstance(dec.args[0], ast.Constant):
                    command = dec.args[0].value
                else:
                    command = stmt.name.replace("_", "-")
            elif fname.endswith("option"):
                options.append(dec)
        if command is None:
            continue
        for dec in options:
            strs = [a.value for a in dec.args
                    if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            flags = [s for s in strs if s.startswith("-")]
            if not flags:
                continue
            kw = {k.arg: k.value for k in dec.keywords if k.arg}
            prefix = "" if command == "serve" else command + " "
            names = [prefix + f for f in flags]
            source = "%s: %s %s" % (rel, stmt.name, "/".join(flags))
            def resolve(kw=kw, flag=flags[0], source=source):
                kind, choices = _click_kind(tree, rel, kw, flag)
                return kind, choices, source
            entries.append(Entry(names, resolve))
    return entries


def _click_kind(tree, rel, kw, flag):
    is_flag = kw.get("is_flag")
    if isinstance(is_flag, ast.Constant) and is_flag.value is True:
        return "switch", []
    typ = kw.get("type")
    if typ is not None:
        if isinstance(typ, ast.Call):
            fname = last_name(typ.func) or ""
            if fname.endswith("Choice") or _is_click_choice(tree, rel, typ.func):
                if not typ.args:
                    raise ExtractError("%s: %s has a Choice without values" % (rel, flag))
                values = const_list(tree, rel, typ.args[0])
                if values is None:
                    raise ExtractError("%s: choices of %s are not static" % (rel, flag))
                return "choice", [str(v) for v in values]
            if fname == "IntRange":
                return "int", []
            if fname == "FloatRange":
                return "float", []
            return "string", []
        name = dotted(typ)
        if name in ("int", "click.INT"):
            return "int", []
        if name in ("float", "click.FLOAT"):
            return "float", []
        if name in ("bool", "click.BOOL"):
            return "choice", ["true", "false"]
        return "string", []
    default = kw.get("default")
    if isinstance(default, ast.Constant):
        if isinstance(default.value, bool):
            return "switch", []
        if isinstance(default.value, int):
            return "int", []
        if isinstance(default.value, float):
            return "float", []
    return "string", []


def _is_click_choice(tree, rel, func, _depth=0):
    if _depth > 5 or not isinstance(func, ast.Name):
        return False
    hit = tree.lookup(rel, func.id)
    if hit is None or not isinstance(hit[1], ast.ClassDef):
        return False
    for base in hit[1].bases:
        name = dotted(base) or ""
        if name.endswith("Choice"):
            return True
        if isinstance(base, ast.Name) and _is_click_choice(tree, hit[0], base, _depth + 1):
            return True
    return False


# --------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------

def extract_vllm(tree):
    entries = []
    arg_rel = tree.require("vllm/engine/arg_utils.py")
    for cls_name in ("EngineArgs", "AsyncEngineArgs"):
        cls = find_class(tree, arg_rel, cls_name)
        if cls is None:
            continue
        func = find_method(cls, "add_cli_args")
        if func is not None:
            entries += argparse_entries(tree, arg_rel, func, cls_name + ".add_cli_args")
    # vllm/entrypoints/openai/cli_args.py up to 0.2x; moved to common/ later.
    cli_rel = (tree.locate("vllm/entrypoints/openai/cli_args.py")
               or tree.require("vllm/entrypoints/common/cli_args.py"))
    func = find_function(tree, cli_rel, "make_arg_parser")
    if func is not None:
        entries += argparse_entries(tree, cli_rel, func, "make_arg_parser")
    frontend = find_class(tree, cli_rel, "FrontendArgs")
    if frontend is not None:
        entries += dataclass_flag_entries(tree, cli_rel, frontend)
    entries += bench_entries(tree, ["vllm/benchmarks/serve.py", "vllm/benchmarks/datasets.py"])
    return entries, [], vllm_env_entries(tree)


def bench_entries(tree, paths):
    """Every add_argument call of the benchmark client's files, keyed "bench --flag"."""
    entries = []
    for path in paths:
        rel = tree.require(path)
        for e in argparse_entries(tree, rel, tree.parse(rel), "bench"):
            e.names = ["bench " + n for n in e.names]
            entries.append(e)
    return entries


def vllm_env_entries(tree):
    """vllm/envs.py: the `environment_variables` dict, NAME -> a lambda or
    env_with_choices(NAME, default, [choices])."""
    rel = tree.require("vllm/envs.py")
    entries = []
    for stmt in _top_level(tree.parse(rel).body):
        target = stmt.target if isinstance(stmt, ast.AnnAssign) else (
            stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None)
        if not (isinstance(target, ast.Name) and target.id == "environment_variables"
                and isinstance(stmt.value, ast.Dict)):
            continue
        for key, value in zip(stmt.value.keys, stmt.value.values):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                continue
            entries.append(Entry([key.value], _env_resolver(tree, rel, key.value, value)))
    return entries


def _env_resolver(tree, rel, name, value):
    def resolve():
        source = "%s: environment_variables[%s]" % (rel, name)
        if isinstance(value, ast.Call) and last_name(value.func) == "env_with_choices" \
                and len(value.args) >= 3:
            values = const_list(tree, rel, value.args[2])
            if values is None:
                raise ExtractError("%s: choices of %s are not static" % (rel, name))
            return "choice", [str(v) for v in values], source
        return "string", [], source
    return resolve


def extract_sglang(tree):
    rel = tree.require("sglang/srt/server_args.py")
    cls = find_class(tree, rel, "ServerArgs")
    if cls is None:
        raise ExtractError("%s: class ServerArgs not found" % rel)
    func = find_method(cls, "add_cli_args")
    if func is None:
        raise ExtractError("%s: ServerArgs.add_cli_args not found" % rel)
    entries = argparse_entries(tree, rel, func, "ServerArgs.add_cli_args")
    entries += bench_entries(tree, ["sglang/bench_serving.py"])
    return entries, [], []


def extract_trtllm(tree):
    serve_rel = tree.require("tensorrt_llm/commands/serve.py")
    flags = click_entries(tree, serve_rel)
    args_rel = tree.require("tensorrt_llm/llmapi/llm_args.py")
    root = find_class(tree, args_rel, "TorchLlmArgs")
    if root is None:
        raise ExtractError("%s: class TorchLlmArgs not found" % args_rel)
    keys = []
    for key in WANTED["trtllm"]["keys"]:
        found = _yaml_key(tree, args_rel, root, key)
        if found is not None:
            keys.append(Entry([key], fixed(*found)))
    return flags, keys, []


def extract_dynamo(tree):
    """The flags each Dynamo worker wrapper adds to its engine's, keyed
    "dynamo.<engine> --flag"."""
    entries = []
    for module, path, func_name in (
            ("dynamo.vllm", "dynamo/vllm/args.py", "parse_args"),
            ("dynamo.trtllm", "dynamo/trtllm/utils/trtllm_utils.py", "cmd_line_args")):
        rel = tree.require(path)
        func = find_function(tree, rel, func_name)
        if func is None:
            raise ExtractError("%s: %s not found" % (rel, func_name))
        for e in argparse_entries(tree, rel, func, func_name):
            e.names = ["%s %s" % (module, n) for n in e.names]
            entries.append(e)
    return entries, [], []


BUNDLED = {"vllm": "vllm", "sglang": "sglang", "tensorrt-llm": "trtllm"}


def dynamo_bundles(source_dir):
    """engine -> the release Dynamo's runtime for it pins, from the wheel's METADATA."""
    found = {}
    for entry in sorted(os.listdir(source_dir)):
        meta = os.path.join(source_dir, entry, "METADATA")
        if not (entry.endswith(".dist-info") and os.path.isfile(meta)):
            continue
        with open(meta, encoding="utf-8") as f:
            for line in f:
                m = re.match(r"Requires-Dist: ([A-Za-z0-9_-]+)(\[[^]]*\])?==([^;\s]+); extra == '(\w+)'",
                             line.strip())
                # the pin of the engine under its own extra (vllm==V; extra == 'vllm')
                if m and BUNDLED.get(m.group(1)) == m.group(4):
                    found[BUNDLED[m.group(1)]] = m.group(3)
    return found


def _yaml_key(tree, rel, cls, key):
    parts = key.split(".")
    cur_rel, cur = rel, cls
    for i, part in enumerate(parts):
        fields = class_fields(tree, cur_rel, cur)
        if part not in fields:
            return None
        f_rel, owner, ann = fields[part]
        atoms = type_atoms(tree, f_rel, ann)
        if i == len(parts) - 1:
            kind, choices = yaml_field_kind(tree, atoms)
            return kind, choices, "%s: %s.%s" % (f_rel, owner, part)
        models = [a for a in atoms if a.kind == "class"
                  and not is_enum_class(tree, a.rel, a.node)]
        if not models:
            return None
        cur_rel, cur = models[0].rel, models[0].node
    return None


ENGINES = {
    "vllm": (extract_vllm, [""]),
    "sglang": (extract_sglang, ["python", ""]),
    "trtllm": (extract_trtllm, [""]),
    "dynamo": (extract_dynamo, [""]),
}


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------

def toml_str(s):
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_list(items):
    return "[" + ", ".join(toml_str(i) for i in items) + "]"


def pick(entries, name):
    for e in entries:
        if name in e.names:
            return e.resolve()
    return None


def render(meta, files, tables, absent, file_commits):
    lines = [HEADER,
             "engine = %s" % toml_str(meta["engine"]),
             "version = %s" % toml_str(meta["version"]),
             "release = %s" % ("true" if meta["release"] else "false"),
             "repository = %s" % toml_str(REPOSITORIES[meta["engine"]])]
    if meta["commit"]:
        lines.append("commit = %s" % toml_str(meta["commit"]))
    if meta["wheel"]:
        lines.append("wheel = %s" % toml_str(meta["wheel"]))
        lines.append("sha256 = %s" % toml_str(meta["sha256"]))
    if not meta["release"]:
        lines.append("# Not a release: read from a branch of the repository at the commit above.")
    for path, sha in file_commits:
        lines.append("# %s was read at commit %s" % (path, sha))
    lines.append("files = [")
    for f in files:
        lines.append("    %s," % toml_str(f))
    lines.append("]")
    for name in absent:
        lines.append("# not in this release: %s" % name)
    if meta.get("bundles"):
        lines.append("")
        lines.append("# The engine release each runtime pins (the wheel's METADATA).")
        lines.append("[bundles]")
        for engine in sorted(meta["bundles"]):
            lines.append("%s = %s" % (engine, toml_str(meta["bundles"][engine])))
    wanted_fields = WANTED_FIELDS.get(meta["engine"], {})
    for table, items in tables:
        for name, entry in items:
            lines.append("")
            lines.append("[[%s]]" % table)
            lines.append("name = %s" % toml_str(name))
            lines.append("kind = %s" % toml_str(entry.kind))
            lines.append("choices = %s" % toml_list(entry.choices))
            if name in wanted_fields and entry.fields is not None:
                have = [f for f in wanted_fields[name] if f in entry.fields]
                lines.append("fields = %s" % toml_list(have))
            lines.append("source = %s" % toml_str(entry.source))
    return "\n".join(lines) + "\n"


def sha256_of(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Extract moeplan's engine launch flags from an engine's released source.")
    parser.add_argument("engine", choices=sorted(ENGINES))
    parser.add_argument("source_dir", help="checkout / extracted release of the engine")
    parser.add_argument("--version", required=True, help="release tag of the source read")
    parser.add_argument("--commit", help="commit of the source read (7 to 40 hex digits)")
    parser.add_argument("--wheel", help="the PyPI wheel SOURCE_DIR was unpacked from "
                                        "(its name and SHA-256 are recorded)")
    parser.add_argument("--unreleased", action="store_true",
                        help="the source is a branch, not a release (recorded as release = false)")
    parser.add_argument("--allow-missing", action="append", default=[], metavar="NAME",
                        help="a wanted flag/key this release is known to lack, e.g. "
                             "--allow-missing=--headless "
                             "(left out of the table instead of failing)")
    parser.add_argument("--file-commit", action="append", default=[], metavar="PATH=SHA",
                        help="a file that was read at another commit than --commit "
                             "(recorded as a comment in the table)")
    args = parser.parse_args(argv)

    if args.commit is None and args.wheel is None:
        parser.error("give the source's --commit, its --wheel, or both")
    if args.commit is not None and not re.fullmatch(r"[0-9a-f]{7,40}", args.commit):
        parser.error("--commit must be 7 to 40 hex digits")
    if args.wheel is not None and not os.path.isfile(args.wheel):
        parser.error("not a file: %s" % args.wheel)
    file_commits = []
    for item in args.file_commit:
        path, _, sha = item.partition("=")
        if not path or not re.fullmatch(r"[0-9a-f]{40}", sha):
            parser.error("--file-commit takes PATH=SHA with a 40-hex sha: %r" % item)
        file_commits.append((path, sha))
    if not os.path.isdir(args.source_dir):
        parser.error("not a directory: %s" % args.source_dir)

    extract, prefixes = ENGINES[args.engine]
    tree = Tree(args.source_dir, prefixes)
    try:
        flag_entries, key_entries, env_entries = extract(tree)
    except ExtractError as e:
        print("engine_flags.py: %s: %s" % (args.engine, e), file=sys.stderr)
        return 1

    wanted = WANTED[args.engine]
    optional = OPTIONAL[args.engine] | set(args.allow_missing)
    one_of = ONE_OF[args.engine]
    optional |= {name for group in one_of for name in group}
    flags, keys, envs, missing, absent, unresolved = [], [], [], [], [], []
    for names, entries, out in ((wanted["flags"], flag_entries, flags),
                                (wanted["keys"], key_entries, keys),
                                (wanted["env"], env_entries, envs)):
        for name in names:
            entry = pick(entries, name)
            if entry is None:
                (absent if name in optional else missing).append(name)
            elif entry.error:
                unresolved.append("%s (%s)" % (name, entry.error))
            else:
                out.append((name, entry))
    for group in one_of:
        if all(name in absent for name in group):
            missing.append(" or ".join(group))
    if missing or unresolved:
        if missing:
            print("engine_flags.py: %s: not found in %s: %s"
                  % (args.engine, args.source_dir, ", ".join(missing)), file=sys.stderr)
        for item in unresolved:
            print("engine_flags.py: %s: cannot determine the kind of %s"
                  % (args.engine, item), file=sys.stderr)
        return 1
    for name in absent:
        print("engine_flags.py: %s: optional, not in this release: %s"
              % (args.engine, name), file=sys.stderr)

    files = sorted(f.replace(os.sep, "/") for f in tree.read)
    unread = [p for p, _ in file_commits if p not in files]
    if unread:
        print("engine_flags.py: --file-commit names a file that was not read: %s"
              % ", ".join(unread), file=sys.stderr)
        return 1
    meta = {
        "engine": args.engine,
        "version": args.version,
        "release": not args.unreleased,
        "commit": args.commit,
        "wheel": os.path.basename(args.wheel) if args.wheel else None,
        "sha256": sha256_of(args.wheel) if args.wheel else None,
        "bundles": dynamo_bundles(args.source_dir) if args.engine == "dynamo" else {},
    }
    tables = (("flag", flags), ("key", keys), ("env", envs))
    sys.stdout.write(render(meta, files, tables, absent, file_commits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
