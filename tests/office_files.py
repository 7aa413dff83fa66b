"""Small Office files written with the same libraries the loaders read them with."""

from __future__ import annotations

from pathlib import Path


def write_docx(path: Path, title: str | None = "Boat safety briefing") -> Path:
    import docx

    document = docx.Document()
    if title:
        document.core_properties.title = title
    document.add_heading("Boat safety briefing", level=1)
    document.add_paragraph("Life jackets for the research boat hang in locker B7.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Item", "Place"
    table.cell(1, 0).text, table.cell(1, 1).text = "Flares", "the orange drum"
    document.save(str(path))
    return path


def write_pptx(path: Path) -> Path:
    import pptx

    presentation = pptx.Presentation()
    for heading, body in [
        ("Winter plan", "The drifting buoys go out on 9 March."),
        ("Budget", "The survey costs 4,200 krona."),
    ]:
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = heading
        slide.placeholders[1].text = body
    slide.notes_slide.notes_text_frame.text = "Ask Maren about the spare hydrophone."
    presentation.save(str(path))
    return path


def write_xlsx(path: Path) -> Path:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Fuel"
    sheet.append(["Tank", "Litres"])
    sheet.append(["North tank", 3100])
    sheet.append(["South tank", "=1500+100"])
    workbook.properties.title = "Fuel log"
    workbook.save(str(path))
    return path
