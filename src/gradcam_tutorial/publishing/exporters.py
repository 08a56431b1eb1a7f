"""The two nbconvert exporters: a self-contained HTML page and a Jekyll post, on our templates.

Both are ``TemplateExporter`` subclasses on ``templates/page`` and ``templates/post``, which extend
nbconvert's ``base/display_priority.j2``; both run :func:`~.reading.shared_steps` first. The page
renders markdown with :class:`~.markup.Renderer` (kramdown ids, MathML) and collects its contents;
the post extracts its figures to files with ``ExtractOutputPreprocessor``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from jinja2 import pass_context
from nbconvert.exporters import TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.preprocessors import ExtractOutputPreprocessor
from traitlets import default
from traitlets.config import Config

from .markup import Contents, Heading, fence, markdown_html, markdown_text
from .reading import DISPLAY_PRIORITY, IMAGE_TYPES, shared_steps

TEMPLATES = Path(__file__).parent / "templates"


class _Exporter(TemplateExporter):
    """A TemplateExporter on our template folders, showing figures before their text fallbacks."""

    @property
    def default_config(self) -> Config:
        config = Config({"NbConvertBase": {"display_data_priority": DISPLAY_PRIORITY}})
        config.merge(super().default_config)
        return config

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(extra_template_basedirs=[str(TEMPLATES)], extra_template_paths=[str(TEMPLATES)], **kwargs)
        for step in shared_steps():
            self.register_preprocessor(step, enabled=True)


class PageExporter(_Exporter):
    """One self-contained HTML page: nbconvert's highlighting, our heading ids, maths and captions."""

    output_mimetype = "text/html"

    @default("file_extension")
    def _file_extension_default(self) -> str:
        return ".html"

    @default("template_name")
    def _template_name_default(self) -> str:
        return "page"

    @pass_context
    def markdown2html(self, context: Any, source: str) -> str:
        """nbconvert's markdown filter, with attachments, on our renderer and this page's contents."""
        attachments = context.get("cell", {}).get("attachments", {})
        return markdown_html(source, self._contents, attachments=attachments)

    def sections(self, title: str) -> list[Heading]:
        """The contents of the page being rendered (a filter: nbconvert deep-copies resources)."""
        return self._contents.sections(title)

    def default_filters(self) -> Any:
        yield from super().default_filters()
        yield ("markdown2html", self.markdown2html)
        yield ("sections", self.sections)

    def from_notebook_node(  # the rendered page (nbconvert's base class annotates a notebook)
        self, nb: nbformat.NotebookNode, resources: dict | None = None, **kw: Any
    ) -> tuple[Any, dict[str, Any]]:
        from pygments.formatters import HtmlFormatter

        language = nb.metadata.get("language_info", {})
        self.register_filter(
            "highlight_code",
            Highlight2HTML(pygments_lexer=language.get("pygments_lexer", language.get("name")), parent=self),
        )
        self._contents = Contents()
        resources = dict(resources or {})
        resources["page"] = dict(resources.get("page", {}), pygments_css=HtmlFormatter().get_style_defs(".highlight"))
        return super().from_notebook_node(nb, resources, **kw)


class PostExporter(_Exporter):
    """A Jekyll post; ExtractOutputPreprocessor names its figures ``<slug>_files/output_<cell>_<output>``."""

    output_mimetype = "text/markdown"

    @default("file_extension")
    def _file_extension_default(self) -> str:
        return ".md"

    @default("template_name")
    def _template_name_default(self) -> str:
        return "post"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        extract = ExtractOutputPreprocessor(
            output_filename_template="output_{cell_index}_{index}{extension}", extract_output_types=set(IMAGE_TYPES)
        )
        self.register_preprocessor(extract, enabled=True)

    def default_filters(self) -> Any:
        yield from super().default_filters()
        yield ("fence", fence)
        yield ("markdown_text", markdown_text)
