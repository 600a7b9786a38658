"""Narrative XHTML: the spec's safe subset only (txt-1, txt-2), parsed with a hardened parser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.fhir.validation import validate_resource

NS = 'xmlns="http://www.w3.org/1999/xhtml"'
Sample = Callable[[str], dict[str, Any]]


def narrative_issues(sample: Sample, div: str) -> list[tuple[str, str]]:
    """Return (code, expression) of the errors for a Patient with this narrative div."""
    patient = sample("Patient")
    patient["text"]["div"] = div
    issues = validate_resource(patient, "Patient")
    for issue in issues:
        assert "javascript" not in issue.diagnostics.lower()
        assert "evil" not in issue.diagnostics
    return [(i.code, i.expression) for i in issues if i.severity == "error"]


@pytest.mark.parametrize("div", [
    pytest.param(f"<div {NS}>Plain text</div>", id="text"),
    pytest.param(f'<div {NS}><p class="x" style="color: red">Para<br/>line</p></div>',
                 id="paragraph-and-inline-style"),
    pytest.param(f'<div {NS}><a href="https://example.org/a">link</a> <a href="#frag">in</a>'
                 f' <a href="Patient/1">rel</a> <a href="mailto:a@example.org">mail</a></div>',
                 id="safe-links"),
    pytest.param(f'<div {NS}><img src="https://example.org/x.png" alt="x"/></div>',
                 id="image-only"),
    pytest.param(f'<div {NS}><table border="1"><tr><th scope="col">A</th></tr>'
                 f'<tr><td colspan="2">1</td></tr></table></div>', id="table"),
    pytest.param(f'<div {NS} xml:lang="en"><!-- note --><ul><li>one</li></ul></div>',
                 id="comment-and-list"),
    pytest.param(f"<div {NS}>Fish &amp; chips &lt;3 &#169;</div>", id="predefined-entities"),
])
def test_safe_narratives(sample: Sample, div: str) -> None:
    assert narrative_issues(sample, div) == []


UNSAFE = [
    (f"<div {NS}><script>alert(1)</script>Hi</div>", "security", "script"),
    (f'<div {NS}><p onclick="evil()">Hi</p></div>', "security", "onclick"),
    (f'<div {NS}><img src="x.png" onerror="evil()"/></div>', "security", "onerror"),
    (f'<div {NS}><a href="javascript:evil()">Hi</a></div>', "security", "javascript-href"),
    (f'<div {NS}><a href=" java\tscript:evil()">Hi</a></div>', "security",
     "obfuscated-javascript-href"),
    (f'<div {NS}><img src="data:image/svg+xml;base64,PHN2Zz4="/>Hi</div>', "security",
     "data-image"),
    (f'<div {NS}><a href="vbscript:evil">Hi</a></div>', "security", "vbscript-href"),
    (f'<div {NS}><p style="background: url(https://evil.example/x)">Hi</p></div>', "security",
     "style-url"),
    (f'<div {NS}><p style="width: expression(evil())">Hi</p></div>', "security",
     "style-expression"),
    (f'<div {NS}><iframe src="https://evil.example"></iframe>Hi</div>', "security", "iframe"),
    (f'<div {NS}><object data="x"></object>Hi</div>', "security", "object"),
    (f'<div {NS}><form action="https://evil.example"><input name="q"/></form></div>',
     "security", "form"),
    (f'<div {NS}><style>p {{color: red}}</style>Hi</div>', "security", "style-element"),
    (f'<div {NS}><link rel="stylesheet" href="https://evil.example/x.css"/>Hi</div>',
     "security", "link-element"),
    (f'<div {NS}><base href="https://evil.example/"/>Hi</div>', "security", "base-element"),
    (f'<!DOCTYPE div><div {NS}>Hi</div>', "security", "doctype"),
    (f'<!DOCTYPE div [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><div {NS}>&xxe;</div>',
     "security", "external-entity"),
    (f'<!DOCTYPE div [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]><div {NS}>&b;</div>',
     "security", "entity-expansion"),
    (f"<div {NS}>Fish&nbsp;chips</div>", "security", "html-entity"),
    (f'<?xml-stylesheet href="https://evil.example/x.xsl"?><div {NS}>Hi</div>', "security",
     "processing-instruction"),
    (f"<div {NS}><p>unclosed</div>", "value", "not-well-formed"),
    ("just text", "value", "not-xml"),
    ("<div>Hi</div>", "value", "no-xhtml-namespace"),
    (f"<p {NS}>Hi</p>", "value", "root-not-div"),
    (f"<div {NS}><blink>Hi</blink></div>", "invariant", "unknown-element"),
    (f'<div {NS}><p xmlns:xl="http://www.w3.org/1999/xlink" xl:href="x">Hi</p></div>',
     "invariant", "namespaced-attribute"),
    (f'<div {NS}><p data-x="1">Hi</p></div>', "invariant", "unknown-attribute"),
    (f"<div {NS}>   <p> </p></div>", "invariant", "no-content"),
    (f"<div {NS}>" + "<div>" * 300 + "deep" + "</div>" * 300 + "</div>", "value",
     "too-deep"),
]


@pytest.mark.parametrize(("div", "code"), [pytest.param(*row[:2], id=row[2]) for row in UNSAFE])
def test_unsafe_narratives(sample: Sample, div: str, code: str) -> None:
    assert (code, "Patient.text.div") in narrative_issues(sample, div)


def test_narrative_in_contained_resource_is_checked(sample: Sample) -> None:
    patient = sample("Patient")
    patient["contained"] = [{"resourceType": "Organization", "id": "gp", "name": "Surgery",
                             "text": {"status": "generated",
                                      "div": f"<div {NS}><script>x</script>Hi</div>"}}]
    patient["generalPractitioner"] = [{"reference": "#gp"}]
    codes = [(i.code, i.expression) for i in validate_resource(patient, "Patient")]
    assert ("security", "Patient.contained[0].text.div") in codes


def test_narrative_must_be_string(sample: Sample) -> None:
    assert ("structure", "Patient.text.div") in narrative_issues(sample, ["<div/>"])  # type: ignore[arg-type]
