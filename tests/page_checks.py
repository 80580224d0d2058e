"""What makes a dashboard page hard to read, found in the browser (tests/test_app_browser.py).

PAGE_PROBLEMS_JS runs in the page and returns one line per problem in its tables: Streamlit
draws st.dataframe on a canvas (glide-data-grid), so the check reads each grid's columns (title,
width) and cells (the text drawn) from the grid component's props and measures the text in the
grid's own font. PAGE_TEXT_JS returns what a person reads (the main area's text without code
spans, the chart axis titles); page_text_problems looks through it in Python.
"""
from __future__ import annotations

import re

PAGE_PROBLEMS_JS = r"""() => {
  const problems = [], cells = new Map();
  const cellProblem = (name, title, what, row, example) => {  // one line per column and kind
    const key = `${name}: "${title}" ${what}`;
    const seen = cells.get(key) || {rows: 0, first: row, example};
    seen.rows += 1;
    cells.set(key, seen);
  };
  const PADDING = 8, LINE_PX = 20, MAX_ROWS = 300;
  const ctx = document.createElement('canvas').getContext('2d');
  const widthOf = (text, font) => { ctx.font = font; return ctx.measureText(text).width; };
  const gridProps = (canvas) => {
    const key = Object.keys(canvas).find(k => k.startsWith('__reactFiber$'));
    let fiber = canvas[key], grid = null, element = null;
    for (; fiber; fiber = fiber.return) {
      const p = fiber.memoizedProps;
      if (!grid && p && p.columns && p.getCellContent) grid = p;
      if (p && p.element && p.element.arrowData !== undefined) { element = p.element; break; }
    }
    return [grid, element];
  };
  const nameOf = (node) => {
    const keyed = node.closest('[class*="st-key-"]');
    const cls = keyed && [...keyed.classList].find(c => c.startsWith('st-key-'));
    return cls ? cls.slice(7) : 'a table';
  };
  const NONE_TEXT = new Set(['None', 'nan', 'NaN', 'null', 'undefined']);
  for (const frame of document.querySelectorAll('[data-testid="stDataFrame"]')) {
    const canvas = frame.querySelector('canvas[data-testid="data-grid-canvas"]');
    if (!canvas || !frame.checkVisibility()) continue;  // in a closed expander or tab
    const [grid, element] = gridProps(canvas);
    if (!grid) { problems.push(`${nameOf(frame)}: grid not found`); continue; }
    const name = nameOf(frame);
    const style = getComputedStyle(frame.querySelector('.stDataFrameGlideDataEditor'));
    const family = style.getPropertyValue('--gdg-font-family') || 'sans-serif';
    const font = `${style.getPropertyValue('--gdg-base-font-style') || '400 14px'} ${family}`;
    const box = frame.querySelector('[data-testid="stDataFrameResizable"]');
    const total = grid.columns.reduce((sum, c) => sum + c.width, 0);
    if (box && total > box.clientWidth + 2)
      problems.push(`${name}: columns ${Math.round(total)} px wide in a ${box.clientWidth} px ` +
                    'table: the last ones are cut off at the right edge');
    const placeholder = element ? (element.placeholder || '') : '';
    const lines = Math.max(1, Math.floor((grid.rowHeight - 2 * 3) / LINE_PX));
    grid.columns.forEach((col, c) => {
      const title = col.title || '';
      if (/_/.test(title)) problems.push(`${name}: raw field name as a header: "${title}"`);
      if (widthOf(title, font) + 2 * PADDING > col.width + 1)
        problems.push(`${name}: header "${title}" cut off (${col.width} px)`);
      for (let r = 0; r < Math.min(grid.rows, MAX_ROWS); r++) {
        const cell = grid.getCellContent([c, r]);
        if (cell.isMissingValue) {
          if (!placeholder || NONE_TEXT.has(placeholder))
            cellProblem(name, title, 'shows a missing value as None', r, '');
          continue;
        }
        const text = typeof cell.displayData === 'string' ? cell.displayData : '';
        if (NONE_TEXT.has(text.trim()))
          cellProblem(name, title, `reads "${text}"`, r, '');
        const room = (col.width - 2 * PADDING) * (cell.allowWrapping ? lines * 0.9 : 1);
        if (widthOf(text, font) > room + 1)
          cellProblem(name, title, `cut off (${col.width} px)`, r, text.slice(0, 60));
      }
    });
  }
  for (const [key, s] of cells)
    problems.push(`${key} in ${s.rows} row(s), first row ${s.first + 1}` +
                  (s.example ? `: "${s.example}"` : ''));
  return problems;
}"""

PAGE_TEXT_JS = r"""() => {
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const copy = main.cloneNode(true);
  copy.querySelectorAll('code, pre, [data-testid="stDataFrame"], .stPlotlyChart, ' +
                        '[data-testid*="Icon"]')
      .forEach(n => n.remove());
  document.body.appendChild(copy);  // innerText needs the copy laid out
  copy.style.position = 'absolute'; copy.style.left = '-99999px';
  const text = copy.innerText;
  copy.remove();
  const axes = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const layout = plot.layout || {};
    for (const axis of ['xaxis', 'yaxis']) {
      const t = layout[axis] && layout[axis].title;
      axes.push({chart: (layout.title && (layout.title.text || layout.title)) || 'a chart',
                 axis, title: (t && (t.text !== undefined ? t.text : t)) || ''});
    }
  }
  return {text, axes};
}"""

# What a person should not have to read: torchao class names, model and file hashes, Python's
# missing values, snake_case field names of the records and results files.
TEXT_PATTERNS = {
    "a torchao class name": re.compile(r"\b\w*(?:Int8|Float8|Int4)\w*Config\b"),
    "a model hash": re.compile(r"\bfit:[0-9a-f]{6,}|\b[0-9a-f]{12,}\b"),
    "a raw field name": re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b"),
    "a missing value": re.compile(r"\bNone\b|\bnan\b"),
    "a capex of $0 in cloud mode": re.compile(r"Up-front \(capex\)\s*\$0\b"),
}


def page_text_problems(found: dict) -> list[str]:
    """Problems in the text a page shows (PAGE_TEXT_JS's answer): one line each."""
    problems = []
    for what, pattern in TEXT_PATTERNS.items():
        problems += [f"{what} in the page's text: {m.group(0)!r}"
                     for m in pattern.finditer(found["text"])]
    for axis in found["axes"]:
        if not axis["title"].strip():
            problems.append(f"chart {axis['chart']!r}: {axis['axis']} has no title")
        elif TEXT_PATTERNS["a raw field name"].search(axis["title"]):
            problems.append(f"chart {axis['chart']!r}: {axis['axis']} title "
                            f"{axis['title']!r} is a raw field name")
    return problems
