"""Each Nextflow module's meta.yml against nf-core's module meta schema (vendored in
workflows/nextflow/tests/, see its README.md) and against its own main.nf: every input element,
every output channel with its elements and the versions topic are documented, nothing more,
so meta.yml cannot drift from main.nf. Runs no binary and needs no Nextflow."""
import json
import re
from pathlib import Path

import jsonschema  # tests/python/requirements.txt; PyYAML comes with snakemake
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NEXTFLOW = ROOT / "workflows" / "nextflow"
MODULES = ["plan", "shard", "commit", "convert"]

# An element of a process input or output: val(x), path("x", ...), eval('x'), ...; the name is
# what nf-core's meta.yml uses as the key (the identifier, or the string without its quotes).
ELEMENT = re.compile(r"""\b(?:val|path|env|eval|stdout)\(\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|(\w+))""")
BARE_VAL = re.compile(r"^\s*(?:val|path)\s+(\w+)\s*$")  # `val x` without parentheses


def block(text, start, end):
    body = re.search(rf"^\s*{start}:\s*\n(.*?)^\s*{end}:", text, re.S | re.M)
    assert body, f"no {start}: block"
    return [line for line in body.group(1).splitlines()
            if line.strip() and not line.strip().startswith("//")]


def names(line):
    bare = BARE_VAL.match(line)
    return [bare.group(1)] if bare else [next(g for g in m.groups() if g is not None)
                                         for m in ELEMENT.finditer(line)]


def main_nf(name):
    """[[element names] per input channel], {emit: [element names]}, {topic: [element names]}."""
    text = (NEXTFLOW / "modules" / "slafconvert" / name / "main.nf").read_text()
    inputs = [names(line) for line in block(text, "input", "output")]
    outputs, topics = {}, {}
    for line in block(text, "output", "when"):
        emit = re.search(r"\bemit:\s*(\w+)", line)
        assert emit, f"output without emit: {line}"
        # Only the part before the first `, emit:`/`, topic:`/`, optional:` holds elements.
        elements = names(re.split(r",\s*(?:emit|topic|optional):", line)[0])
        outputs[emit.group(1)] = elements
        topic = re.search(r"\btopic:\s*(\w+)", line)
        if topic:
            topics[topic.group(1)] = elements
    return inputs, outputs, topics


def meta_yml(name):
    return yaml.safe_load((NEXTFLOW / "modules" / "slafconvert" / name / "meta.yml").read_text())


def keys(channel):
    """Element names of one meta.yml channel: a list of one-key maps, or a single one-key map."""
    channel = channel if isinstance(channel, list) else [channel]
    return [k for element in channel for k in element]


def elements(meta):
    """(section, name, properties) for every element in input, output and topics."""
    channels = [("input", c) for c in meta.get("input", [])]
    for section in ("output", "topics"):
        channels += [(f"{section}.{n}", c) for n, cs in meta.get(section, {}).items() for c in cs]
    for section, channel in channels:
        for element in channel if isinstance(channel, list) else [channel]:
            for key, props in element.items():
                yield section, key, props


@pytest.mark.parametrize("name", MODULES)
def test_meta_yml_valid_against_nf_core_schema(name):
    schema = json.loads((NEXTFLOW / "tests" / "nf-core-meta-schema.json").read_text())
    # The validator for the draft the schema's $schema names (2020-12 at the vendored commit).
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    errors = sorted(cls(schema).iter_errors(meta_yml(name)), key=lambda e: [str(p) for p in e.absolute_path])

    def why(e):  # an anyOf/oneOf failure says little by itself: add its deepest cause
        cause = max(e.context, key=lambda c: len(c.absolute_path), default=None)
        return e.message[:120] + (f" ({cause.message})" if cause else "")
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {why(e)}" for e in errors)


@pytest.mark.parametrize("name", MODULES)
def test_meta_yml_matches_main_nf(name):
    inputs, outputs, topics = main_nf(name)
    meta = meta_yml(name)
    assert [keys(c) for c in meta.get("input", [])] == inputs
    # Each output channel is one tuple in meta.yml (a list holding one list of elements).
    documented = {emit: [keys(c) for c in chans] for emit, chans in meta["output"].items()}
    assert documented == {emit: [els] for emit, els in outputs.items()}
    assert {t: [keys(c) for c in chans] for t, chans in meta.get("topics", {}).items()} == \
        {t: [els] for t, els in topics.items()}


@pytest.mark.parametrize("name", MODULES)
def test_file_entries_described_with_ontologies(name):
    files = [(s, k, p) for s, k, p in elements(meta_yml(name)) if p.get("type") in ("file", "directory")]
    assert files, "no file or directory entries documented"
    for section, key, props in files:
        assert str(props.get("description", "")).strip(), f"{section}: {key} has no description"
        assert "ontologies" in props, f"{section}: {key} has no ontologies (use [] if none fits)"
