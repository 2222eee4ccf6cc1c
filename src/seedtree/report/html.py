"""`report.html`: one self-contained file (no network) showing a reasoning tree and its timeline.

The tree: collapsible nodes with their values, the chosen path highlighted; click a node to read
its full thought, state and evaluations. The timeline: one chart per engine call (a level's
generation or evaluation), one row per branch, its draft / verify / prefill / decode intervals.
The tree's JSON is embedded in the page; the drawing is plain JavaScript and SVG.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from seedtree.search.tree import Tree

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;display:flex;height:100vh}
#left{flex:1.2;overflow:auto;padding:12px 16px;border-right:1px solid #ddd}
#right{flex:1;overflow:auto;padding:12px 16px;background:#fafafa}
h1{font-size:18px;margin:4px 0} h2{font-size:15px;margin:16px 0 6px}
.meta{color:#555;font-size:13px;white-space:pre-wrap}
ul.tree{list-style:none;padding-left:18px;margin:0} ul.tree.root{padding-left:0}
li.node{margin:2px 0}
.row{display:flex;gap:6px;align-items:baseline}
.toggle{cursor:pointer;width:14px;color:#777;user-select:none;font-family:monospace}
.label{cursor:pointer;padding:1px 5px;border-radius:4px;border:1px solid transparent}
.label:hover{border-color:#bbb}
.label.chosen{background:#fff3c4;border-color:#e0b000;font-weight:600}
.label.active{outline:2px solid #3b82f6}
.value{font-family:monospace;color:#0a6;min-width:42px}
.tag{font-size:11px;color:#888}
li.collapsed>ul{display:none}
#detail pre{white-space:pre-wrap;background:#fff;border:1px solid #ddd;padding:8px}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 10px;vertical-align:-2px}
"""

SCRIPT = r"""
const T = JSON.parse(document.getElementById('tree-data').textContent);
const chosen = new Set();
if (T.final !== null) { let n = T.nodes[T.final]; while (n) { chosen.add(n.id);
  n = n.parent === null ? null : T.nodes[n.parent]; } }
const short = (s, k) => s.length > k ? s.slice(0, k) + '\u2026' : s;
function renderNode(node) {
  const li = document.createElement('li');
  li.className = 'node'; li.dataset.id = node.id;
  const row = document.createElement('div'); row.className = 'row';
  const tog = document.createElement('span'); tog.className = 'toggle';
  tog.textContent = node.children.length ? '\u25be' : '\u00b7';
  tog.onclick = () => { if (node.children.length) { li.classList.toggle('collapsed');
    tog.textContent = li.classList.contains('collapsed') ? '\u25b8' : '\u25be'; } };
  const val = document.createElement('span'); val.className = 'value';
  val.textContent = node.value === null ? '' : node.value.toFixed(1);
  const lab = document.createElement('span');
  lab.className = 'label' + (chosen.has(node.id) ? ' chosen' : '');
  lab.textContent = node.parent === null ? 'root' : short(node.thought || '(empty)', 90);
  lab.onclick = () => show(node, lab);
  const tags = [];
  if (node.selected) tags.push('selected'); if (node.terminal) tags.push('terminal');
  if (node.pruned) tags.push('pruned');
  const tag = document.createElement('span'); tag.className = 'tag';
  tag.textContent = tags.join(' ');
  row.append(tog, val, lab, tag); li.append(row);
  if (node.children.length) {
    const ul = document.createElement('ul'); ul.className = 'tree';
    for (const c of node.children) ul.append(renderNode(T.nodes[c]));
    li.append(ul);
    if (!chosen.has(node.id)) { li.classList.add('collapsed'); tog.textContent = '\u25b8'; }
  }
  return li;
}
function show(node, lab) {
  document.querySelectorAll('.label.active').forEach(e => e.classList.remove('active'));
  lab.classList.add('active');
  const d = document.getElementById('detail'); d.innerHTML = '';
  const add = (title, text) => { const h = document.createElement('h2'); h.textContent = title;
    const p = document.createElement('pre'); p.textContent = text; d.append(h, p); };
  add('Node ' + node.id + ' (depth ' + node.depth + ')', node.thought || '(root)');
  add('Value', node.value === null ? 'not evaluated' : String(node.value) +
      (node.unparsed ? '  (' + node.unparsed + ' unparseable, scored 0)' : ''));
  if (node.value_texts.length) add('Evaluations', node.value_texts.join('\n---\n'));
  add('State', node.state);
  add('Generation stats', JSON.stringify(node.stats, null, 1));
}
const COLORS = {prefill: '#9e9e9e', draft: '#4c72b0', verify: '#dd8452', decode: '#dd8452',
  request: '#55a868'};
function timeline(call, idx) {
  const iv = call.trace.intervals; const wall = Math.max(call.trace.wall_s, 1e-9);
  const rows = Math.max(call.requests, 1); const W = 560, H = 16 * rows + 24, X0 = 40;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', W); svg.setAttribute('height', H); svg.classList.add('timeline');
  for (let r = 0; r < rows; r++) { const t = document.createElementNS(ns, 'text');
    t.setAttribute('x', 2); t.setAttribute('y', 14 + 16 * r); t.setAttribute('font-size', 10);
    t.textContent = 'b' + r; svg.append(t); }
  for (const i of iv) for (const b of i.branches) {
    const rect = document.createElementNS(ns, 'rect');
    const x = X0 + (W - X0 - 4) * i.start / wall;
    rect.setAttribute('x', x); rect.setAttribute('y', 4 + 16 * b);
    rect.setAttribute('width', Math.max(1, (W - X0 - 4) * (i.end - i.start) / wall));
    rect.setAttribute('height', 12); rect.setAttribute('fill', COLORS[i.kind] || '#888');
    const tt = document.createElementNS(ns, 'title');
    tt.textContent = i.kind + ' ' + (i.end - i.start).toFixed(3) + ' s'; rect.append(tt);
    svg.append(rect); }
  const axis = document.createElementNS(ns, 'text'); axis.setAttribute('x', X0);
  axis.setAttribute('y', H - 4); axis.setAttribute('font-size', 10);
  axis.textContent = '0 \u2192 ' + wall.toFixed(2) + ' s'; svg.append(axis);
  const box = document.createElement('div');
  const h = document.createElement('h2');
  h.textContent = '#' + idx + ' ' + call.phase + (call.level >= 0 ? ' level ' + call.level : '') +
    ': ' + call.requests + ' requests, ' + call.new_tokens + ' tokens, ' +
    call.wall_s.toFixed(2) + ' s' + (call.trace.method === 'openai' ? ' (endpoint requests)' :
    ', target busy ' + (100 * call.trace.target_busy_fraction).toFixed(0) + '%');
  box.append(h, svg); return box;
}
document.getElementById('tree').append(renderNode(T.nodes[0]));
const tl = document.getElementById('timelines');
T.calls.forEach((c, i) => tl.append(timeline(c, i)));
document.body.dataset.ready = '1';
"""


def render_report(tree: Tree) -> str:
    data = json.dumps(tree.to_dict()).replace("</", "<\\/")
    correct = tree.metrics.get("correct")
    summary = (
        f"method {tree.method} | {len(tree.nodes)} nodes | {tree.wall_s:.1f} s | "
        f"{tree.new_tokens} tokens | answer correct: {correct}\n"
        f"answer: {tree.answer}"
    )
    legend = "".join(
        f'<span style="background:{c}"></span>{k}'
        for k, c in (("draft", "#4c72b0"), ("verify/decode", "#dd8452"), ("prefill", "#9e9e9e"))
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>seedtree: {html.escape(tree.task)} {html.escape(tree.example_id)}</title>
<style>{STYLE}</style></head>
<body>
<div id="left">
<h1>{html.escape(tree.task)} · {html.escape(tree.example_id)}</h1>
<div class="meta">{html.escape(tree.question)}</div>
<div class="meta">{html.escape(summary)}</div>
<h2>Tree (chosen path highlighted; click a node to read it)</h2>
<ul class="tree root" id="tree"></ul>
<h2>Timeline per engine call</h2><div class="legend">{legend}</div>
<div id="timelines"></div>
</div>
<div id="right"><div id="detail"><p class="meta">Click a node to see its full text.</p></div></div>
<script type="application/json" id="tree-data">{data}</script>
<script>{SCRIPT}</script>
</body></html>
"""


def write_report(tree: Tree, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(tree), encoding="utf-8")
    return path
