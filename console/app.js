// skill-fleet console: plain ES2020, no framework, served under a strict Content-Security-Policy.
// Rules kept throughout: data is rendered as text (textContent / text nodes, never innerHTML),
// no inline styles (only CSSOM `el.style.x = ...`), no eval. Charts are Apache ECharts
// (`window.echarts`, loaded before this module); every chart tooltip has a formatter that
// escapes its text (the default tooltip markup carries style attributes the policy refuses).

'use strict';

const TOKEN_KEY = 'skill-fleet-token';
const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
const PALETTE = ['#5470c6', '#91cc75', '#fac858', '#ee6666', '#73c0de', '#3ba272', '#fc8452', '#9a60b4',
  '#ea7ccc', '#2f4554', '#c4a000', '#61a0a8', '#d48265', '#749f83', '#ca8622', '#6e7074'];
const NO_FIT_COLOUR = '#e3e5e8';

// ---------------------------------------------------------------- small helpers

const $ = (id) => document.getElementById(id);

/** Creates an element. `props`: class, text, attributes (never `style`), `on*` listeners. */
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = String(v);
    else if (k === 'style') throw new Error('no inline styles');
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'value') e.value = v;
    else if (k === 'checked' || k === 'disabled' || k === 'selected') e[k] = Boolean(v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  append(e, children);
  return e;
}

function append(parent, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return parent;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

function replace(node, ...children) {
  return append(clear(node), children);
}

/** Escapes text for the one place HTML strings exist: ECharts tooltip formatters. */
function esc(v) {
  return String(v).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

function debounce(fn, ms) {
  let t = null;
  const d = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
  d.cancel = () => clearTimeout(t);
  return d;
}

function fmtNum(v, digits = 3) {
  if (v === null || v === undefined || v === '') return '—';
  if (typeof v !== 'number') return String(v);
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
  const a = Math.abs(v);
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(digits))}M`;
  if (a >= 1e4) return `${Number((v / 1e3).toPrecision(digits))}k`;
  return String(Number(v.toPrecision(digits)));
}

const fmtUsd = (v) => (typeof v === 'number' ? `$${v.toFixed(v < 1 ? 3 : 2)}` : '—');
const fmtPct = (v) => (typeof v === 'number' ? `${(v * 100).toFixed(1)}%` : '—');
const fmtTime = (s) => {
  if (!s) return '—';
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? String(s) : d.toLocaleString();
};
const json = (v) => JSON.stringify(v, null, 2);

function kv(pairs, testPrefix) {
  const dl = el('dl', { class: 'kv' });
  for (const [k, v, id] of pairs) {
    dl.append(el('dt', { text: k }));
    dl.append(el('dd', { 'data-testid': id ? `${testPrefix || ''}${id}` : null }, v instanceof Node ? v : String(v ?? '—')));
  }
  return dl;
}

function table(headers, rows, opts = {}) {
  const t = el('table', { 'data-testid': opts.testid || null });
  t.append(el('thead', {}, el('tr', {}, headers.map((h) => el('th', { text: h })))));
  const tb = el('tbody');
  for (const r of rows) {
    const tr = el('tr', { class: r.class || null, 'data-testid': r.testid || null });
    for (const c of r.cells || r) tr.append(el('td', {}, c instanceof Node ? c : String(c ?? '—')));
    tb.append(tr);
  }
  t.append(tb);
  return el('div', { class: 'table-wrap' }, t);
}

// ---------------------------------------------------------------- API client and token

class ApiError extends Error {
  constructor(status, body) {
    let msg = `HTTP ${status}`;
    let details = [];
    if (body && typeof body === 'object') {
      const e = body.error;
      if (typeof e === 'string') msg = e;
      else if (e && typeof e === 'object' && e.message) msg = e.message;
      details = body.details || (e && e.details) || [];
    } else if (typeof body === 'string' && body) {
      msg = body.slice(0, 300);
    }
    super(msg);
    this.status = status;
    this.body = body;
    this.details = Array.isArray(details) ? details : [];
  }
}

let tokenWaiter = null;

function askToken(message) {
  if (tokenWaiter) return tokenWaiter;
  tokenWaiter = new Promise((resolve) => {
    const panel = $('token-panel');
    const form = $('token-form');
    const input = $('token-input');
    $('token-error').textContent = message || '';
    panel.hidden = false;
    input.value = '';
    input.focus();
    const onSubmit = (ev) => {
      ev.preventDefault();
      const v = input.value.trim();
      if (!v) return;
      sessionStorage.setItem(TOKEN_KEY, v);
      input.value = '';
      panel.hidden = true;
      form.removeEventListener('submit', onSubmit);
      tokenWaiter = null;
      resolve();
    };
    form.addEventListener('submit', onSubmit);
  });
  return tokenWaiter;
}

/** Calls the API. Every call carries the token when one is kept; a 401 asks for it (once for
 * all calls waiting at that moment) and retries. Never puts the token in a URL. */
async function api(method, path, body) {
  for (let attempt = 0; attempt < 6; attempt += 1) {
    if (tokenWaiter) await tokenWaiter;
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: 'no-store', credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, `network error: ${e.message}`);
    }
    if (res.status === 401) {
      const sent = token;
      if (sent && sessionStorage.getItem(TOKEN_KEY) === sent) sessionStorage.removeItem(TOKEN_KEY);
      if (sent || !tokenWaiter) await askToken(sent ? 'That token was refused; try again.' : '');
      continue;
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = text;
      }
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }
  throw new ApiError(401, { error: 'unauthorized' });
}

function showError(node, err, prefix) {
  if (!node) return;
  clear(node);
  if (!err) return;
  node.append(el('div', { text: `${prefix ? `${prefix}: ` : ''}${err.message || err}` }));
  for (const d of err.details || []) node.append(diagnostic(d));
}

function diagnostic(d) {
  if (!d || typeof d !== 'object') return el('div', { class: 'diag', text: String(d) });
  const where = d.file ? `${d.file}${d.line ? `:${d.line}` : ''}${d.col ? `:${d.col}` : ''}` : d.field || '';
  return el('div', { class: 'diag', 'data-testid': 'diagnostic' },
    where ? el('div', { class: 'where', text: `${d.severity ? `${d.severity} ` : ''}${where}` }) : null,
    el('div', { text: d.message || json(d) }),
    d.help ? el('div', { class: 'help', text: d.help }) : null);
}

// ---------------------------------------------------------------- charts

const charts = new Map();

function chartIn(node) {
  let c = charts.get(node.id);
  if (c && c.getDom() !== node) c = null;
  if (!c) {
    clear(node);
    c = window.echarts.init(node, null, { renderer: 'canvas' });
    charts.set(node.id, c);
    // The chart follows its box (a narrow screen, a column that appears or goes).
    const chart = c;
    new ResizeObserver(debounce(() => {
      if (!chart.isDisposed()) chart.resize();
    }, 50)).observe(node);
  }
  return c;
}

function emptyChart(node, message) {
  const c = charts.get(node.id);
  if (c) {
    c.dispose();
    charts.delete(node.id);
  }
  replace(node, el('p', { class: 'empty', 'data-testid': 'empty', text: message }));
}

window.addEventListener('resize', debounce(() => charts.forEach((c) => c.resize()), 150));

function resizeVisibleCharts() {
  charts.forEach((c) => {
    if (c.getDom().offsetParent !== null) c.resize();
  });
}

const tooltipBase = {
  className: 'sf-tooltip',
  confine: true,
  renderMode: 'html',
  backgroundColor: '#ffffff',
  borderColor: '#d9dde3',
  textStyle: { color: '#1d2330', fontSize: 12 },
};

function axisTooltip(unit = '') {
  return {
    ...tooltipBase,
    trigger: 'axis',
    axisPointer: { type: 'shadow' },
    formatter: (ps) => {
      const list = Array.isArray(ps) ? ps : [ps];
      const head = list.length ? esc(list[0].axisValueLabel ?? list[0].name) : '';
      const rows = list
        .filter((p) => p.value !== null && p.value !== undefined && p.value !== 0)
        .map((p) => `${esc(p.seriesName)}: ${esc(fmtNum(Array.isArray(p.value) ? p.value[1] : p.value))}${esc(unit)}`);
      return [head, ...rows].join('<br>');
    },
  };
}

function barChart(node, categories, series, opts = {}) {
  const c = chartIn(node);
  c.setOption({
    animation: false,
    color: opts.colors || PALETTE,
    grid: { left: 48, right: 16, top: series.length > 1 ? 34 : 16, bottom: opts.rotate ? 80 : 40, containLabel: false },
    tooltip: axisTooltip(opts.unit),
    legend: series.length > 1 ? { top: 0, type: 'scroll', tooltip: { show: false } } : { show: false },
    xAxis: { type: 'category', data: categories, axisLabel: { rotate: opts.rotate || 0, interval: 0, hideOverlap: true } },
    yAxis: { type: 'value', name: opts.yName || '', minInterval: opts.integer ? 1 : 0 },
    series: series.map((s) => ({ type: opts.type || 'bar', stack: opts.stack ? 'all' : undefined, ...s })),
  }, true);
  return c;
}

// ---------------------------------------------------------------- state: rules context

let ctx = null; // GET /api/v1/rules/context
let ctxPromise = null;

function loadContext(force = false) {
  if (force) {
    ctx = null;
    ctxPromise = null;
  }
  if (ctx) return Promise.resolve(ctx);
  if (!ctxPromise) {
    ctxPromise = api('GET', '/api/v1/rules/context').then((c) => {
      ctx = c;
      $('revision').textContent = `rules ${c.revision}`;
      return c;
    }, (e) => {
      ctxPromise = null;
      throw e;
    });
  }
  return ctxPromise;
}

function optimizerColour(label) {
  const choices = (ctx && ctx.choices) || [];
  let i = choices.indexOf(label);
  // Metrics name optimizers without their variant (`miprov2`): the first label of that optimizer.
  if (i < 0) i = choices.findIndex((c) => String(c).startsWith(`${label} `));
  if (i < 0) {
    // Stable for a label the context does not list: a hash of its name.
    i = choices.length;
    for (const ch of String(label)) i = (i * 31 + ch.charCodeAt(0)) >>> 0;
  }
  return PALETTE[i % PALETTE.length];
}

const numericFields = () => (ctx ? ctx.fields.filter((f) => f.type === 'integer' || f.type === 'number') : []);
const fieldByName = (name) => (ctx ? ctx.fields.find((f) => f.name === name) : null);

// Values of the playground form, as typed (strings), shared with the map.
let pgValues = {};

/** Converts the typed strings into the JSON body: numbers where they parse, booleans, else text
 * (labels like `high`, or invalid values the API reports). Empty fields are left out. */
function inputBody(values) {
  const body = {};
  for (const [name, raw] of Object.entries(values)) {
    if (raw === undefined || raw === null || String(raw).trim() === '') continue;
    const v = String(raw).trim();
    const f = fieldByName(name);
    const type = f ? f.type : 'string';
    if ((type === 'integer' || type === 'number') && /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(v)) body[name] = Number(v);
    else if (type === 'boolean' && (v === 'true' || v === 'false')) body[name] = v === 'true';
    else body[name] = v;
  }
  return body;
}

function valuesQuery(values) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) if (v !== undefined && v !== null && String(v).trim() !== '') q.set(k, String(v).trim());
  return q;
}

function updateNavLinks() {
  const q = valuesQuery(pgValues).toString();
  const pg = `#/playground${q ? `?${q}` : ''}`;
  document.querySelector('[data-page=playground]').setAttribute('href', pg);
  $('pg-share').setAttribute('href', pg);
  $('pg-to-map').setAttribute('href', `#/map${q ? `?${q}` : ''}`);
}

// ---------------------------------------------------------------- routing

let current = { page: '', arg: '', params: new URLSearchParams() };
let pageCleanup = null;

function parseHash() {
  const h = location.hash.replace(/^#/, '') || '/playground';
  const [path, query] = h.split('?');
  const parts = path.split('/').filter(Boolean);
  return { page: parts[0] || 'playground', arg: parts.slice(1).map(decodeURIComponent).join('/'), params: new URLSearchParams(query || '') };
}

function setHashQuiet(hash) {
  if (location.hash !== hash) history.replaceState(null, '', hash);
}

async function route() {
  const r = parseHash();
  if (pageCleanup) {
    pageCleanup();
    pageCleanup = null;
  }
  current = r;
  const pages = ['playground', 'map', 'rules', 'jobs', 'loop'];
  const page = pages.includes(r.page) ? r.page : 'playground';
  for (const p of pages) $(`page-${p}`).hidden = p !== page;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === page);
  document.title = `skill-fleet · ${page}`;
  $('global-error').hidden = true;
  try {
    if (page === 'playground') await showPlayground(r.params);
    else if (page === 'map') await showMap(r.params);
    else if (page === 'rules') await showRules();
    else if (page === 'jobs') await showJobs(r.arg, r.params);
    else if (page === 'loop') await showLoop();
  } catch (e) {
    const g = $('global-error');
    g.hidden = false;
    showError(g, e);
  }
  resizeVisibleCharts();
}

// ---------------------------------------------------------------- 1. playground

let pgBuiltFor = null;
let pgSeq = 0;
const pgEvaluate = debounce(() => evaluateNow(), 250);

function buildPlaygroundForm() {
  const form = $('pg-form');
  clear(form);
  // Required fields first, then the order the server gives.
  const fields = [...ctx.fields.filter((f) => f.required), ...ctx.fields.filter((f) => !f.required)];
  for (const f of fields) {
    const id = `f-${f.name}`;
    const hints = [];
    if (f.required) hints.push('required');
    if (f.min !== null && f.min !== undefined) hints.push(`min ${f.min}`);
    if (f.max !== null && f.max !== undefined) hints.push(`max ${f.max}`);
    if (f.default !== null && f.default !== undefined) hints.push(`default ${f.default}`);
    if (f.aliases && f.aliases.length) hints.push(`alias ${f.aliases.join(', ')}`);
    const labels = f.labels && typeof f.labels === 'object' ? Object.entries(f.labels) : [];
    if (labels.length) hints.push(`or ${labels.map(([k, v]) => `${k} (${v})`).join(', ')}`);
    let input;
    if (Array.isArray(f.enum) && f.enum.length) {
      input = el('select', { id, name: f.name, 'data-testid': `field-${f.name}` },
        el('option', { value: '', text: f.default !== null && f.default !== undefined ? `(default ${f.default})` : '(none)' }),
        f.enum.map((v) => el('option', { value: String(v), text: String(v) })));
    } else if (f.type === 'boolean') {
      input = el('select', { id, name: f.name, 'data-testid': `field-${f.name}` },
        el('option', { value: '', text: f.default !== null && f.default !== undefined ? `(default ${f.default})` : '(none)' }),
        el('option', { value: 'true', text: 'true' }), el('option', { value: 'false', text: 'false' }));
    } else {
      const numeric = f.type === 'integer' || f.type === 'number';
      input = el('input', {
        id, name: f.name, type: 'text', 'data-testid': `field-${f.name}`,
        inputmode: numeric && !labels.length ? (f.type === 'integer' ? 'numeric' : 'decimal') : null,
        placeholder: f.default !== null && f.default !== undefined ? String(f.default) : '',
        list: labels.length ? `${id}-labels` : null,
        'aria-describedby': `err-${f.name}`,
      });
    }
    const onChange = () => {
      pgValues[f.name] = input.value;
      onPlaygroundInput();
    };
    input.addEventListener('input', onChange);
    input.addEventListener('change', onChange);
    form.append(el('div', { class: 'field', 'data-field': f.name },
      el('label', { for: id }, f.name, el('span', { class: 'type', text: f.type })),
      input,
      labels.length ? el('datalist', { id: `${id}-labels` }, labels.map(([k]) => el('option', { value: k }))) : null,
      el('div', { class: 'field-error', id: `err-${f.name}`, 'data-testid': `error-${f.name}`, role: 'alert' }),
      f.description || hints.length ? el('div', { class: 'help' }, f.description || '', f.description && hints.length ? ' · ' : '', hints.join(', ')) : null));
  }
  pgBuiltFor = ctx.revision;
}

function fillPlaygroundForm() {
  for (const f of ctx.fields) {
    const input = $(`f-${f.name}`);
    if (input) input.value = pgValues[f.name] ?? '';
  }
}

async function showPlayground(params) {
  await loadContext();
  if (pgBuiltFor !== ctx.revision || !$('pg-form').querySelector('.field')) buildPlaygroundForm();
  const fromUrl = {};
  for (const [k, v] of params) if (v !== '') fromUrl[k] = v;
  pgValues = fromUrl;
  fillPlaygroundForm();
  updateNavLinks();
  pgEvaluate.cancel();
  await evaluateNow();
}

function onPlaygroundInput() {
  const q = valuesQuery(pgValues).toString();
  setHashQuiet(`#/playground${q ? `?${q}` : ''}`);
  updateNavLinks();
  $('pg-decision').dataset.state = 'typing';
  pgEvaluate();
}

function clearFieldErrors() {
  for (const n of document.querySelectorAll('#pg-form .field-error')) n.textContent = '';
  for (const n of document.querySelectorAll('#pg-form .invalid')) n.classList.remove('invalid');
  clear($('pg-general-error'));
}

async function evaluateNow() {
  const body = inputBody(pgValues);
  const seq = ++pgSeq;
  const out = $('pg-decision');
  if (!Object.keys(body).length) {
    clearFieldErrors();
    out.dataset.state = 'empty';
    replace(out, el('p', { class: 'muted', text: 'Fill in the form: the decision appears as you type.' }));
    return;
  }
  out.dataset.state = 'loading';
  let d;
  try {
    d = await api('POST', '/api/v1/rules/evaluate?explain=true', body);
  } catch (e) {
    if (seq !== pgSeq) return;
    clearFieldErrors();
    const general = [];
    for (const det of e.details) {
      const name = det && det.field;
      const slot = name ? $(`err-${name}`) : null;
      if (slot) {
        slot.textContent = `${det.message || 'invalid'}${det.help ? ` — ${det.help}` : ''}`;
        const inp = $(`f-${name}`);
        if (inp) inp.classList.add('invalid');
      } else general.push(det);
    }
    const g = $('pg-general-error');
    if (general.length || !e.details.length) showError(g, { message: e.message, details: general });
    out.dataset.state = 'error';
    return;
  }
  if (seq !== pgSeq) return;
  clearFieldErrors();
  renderDecision(out, d);
  out.dataset.state = 'ok';
  out.dataset.optimizer = d.recommended;
}

function variantOf(d) {
  const c = d.config || {};
  return d.variant ?? c.variant ?? c.auto ?? null;
}

function renderDecision(out, d) {
  clear(out);
  const box = el('div', { class: 'decision' });
  box.append(el('div', { class: 'headline' },
    el('span', { class: 'optimizer', 'data-testid': 'dec-optimizer', text: d.recommended }),
    variantOf(d) ? el('span', { 'data-testid': 'dec-variant', text: `variant ${variantOf(d)}` }) : null,
    el('span', {}, 'cost ', el('strong', { 'data-testid': 'dec-cost', text: fmtUsd(d.estimated_cost) })),
    el('span', {}, 'time ', el('strong', { 'data-testid': 'dec-minutes', text: `${d.estimated_time_minutes} min` })),
    el('span', {}, 'confidence ', el('strong', { 'data-testid': 'dec-confidence', text: fmtPct(d.confidence) }))));
  box.append(el('p', { class: 'reasoning', 'data-testid': 'dec-reasoning', text: d.reasoning }));
  box.append(kv([
    ['rule', d.rule, 'rule'],
    ['rules revision', d.rules_revision, 'revision'],
  ], 'dec-'));
  box.append(el('h3', { text: 'Config' }));
  const cfg = kv(Object.entries(d.config || {}).map(([k, v]) => [k, el('span', { class: 'mono', text: typeof v === 'object' ? JSON.stringify(v) : String(v) })]));
  cfg.classList.add('config');
  cfg.dataset.testid = 'dec-config';
  box.append(cfg);
  if (d.alternatives && d.alternatives.length) {
    box.append(el('h3', { text: 'Alternatives' }));
    box.append(table(['optimizer', 'cost', 'time', 'quality risk', 'note'],
      d.alternatives.map((a) => [a.optimizer, fmtUsd(a.estimated_cost), `${a.estimated_time_minutes} min`, fmtPct(a.quality_risk), a.note]),
      { testid: 'dec-alternatives' }));
  }
  if (d.trace) box.append(renderTrace(d.trace));
  out.append(box);
}

function renderTrace(t) {
  const wrap = el('details', { 'data-testid': 'dec-trace', open: true }, el('summary', { text: 'Explain: how the decision was reached' }));
  wrap.append(el('h3', { text: 'Rules tried' }));
  wrap.append(table(['rule', 'at', 'matched', 'conditions'], (t.rules || []).map((r) => ({
    class: r.matched ? 'matched' : null,
    cells: [r.id, el('span', { class: 'mono', title: r.at, text: String(r.at).split('/').pop() }), r.matched ? 'yes' : 'no',
      el('div', {}, (r.conditions || []).map((c) => el('div', {
        class: 'mono',
        text: `${c.field ?? 'expr'} ${c.op} ${typeof c.expected === 'object' ? JSON.stringify(c.expected) : c.expected} (actual ${JSON.stringify(c.actual)}) → ${c.result}`,
      })))],
  }))));
  if (t.guard) {
    wrap.append(el('h3', { text: `Budget guard: ${t.guard.outcome}` }));
    wrap.append(kv([['budget', fmtUsd(t.guard.budget_usd)], ['rule choice cost', fmtUsd(t.guard.original_cost)]]));
    if (t.guard.steps && t.guard.steps.length) {
      wrap.append(table(['optimizer', 'variant', 'cost', 'fits'], t.guard.steps.map((s) => [s.optimizer, s.variant ?? '—', fmtUsd(s.estimated_cost), s.fits ? 'yes' : 'no'])));
    }
  }
  if (t.estimate) {
    wrap.append(el('h3', { text: 'Estimate' }));
    wrap.append(kv([
      ['cost', el('span', { class: 'mono', text: t.estimate.cost_formula })],
      ['time', el('span', { class: 'mono', text: t.estimate.time_formula })],
      ['model', t.estimate.model],
    ]));
  }
  if (t.confidence) {
    const c = t.confidence;
    wrap.append(el('h3', { text: 'Confidence' }));
    wrap.append(kv([['base', c.base], ['history', `${c.history_successes} of ${c.history_matches} past runs reached the quality`],
      ['after history', c.after_history], ['small trainset factor', c.small_trainset_factor], ['value', c.value]]));
  }
  if (t.input) {
    wrap.append(el('h3', { text: 'Checked input' }));
    wrap.append(el('pre', { text: json(t.input) }));
  }
  return wrap;
}

// ---------------------------------------------------------------- 2. decision map

const mapState = {
  x: 'trainset_size', y: 'budget_usd', x_min: '', x_max: '', y_min: '', y_max: '',
  x_scale: 'log', y_scale: 'log', n: '100', guard: 'on', compare: '', slider: '', sliderValue: '',
};
const MAP_KEYS = ['x', 'y', 'x_min', 'x_max', 'y_min', 'y_max', 'x_scale', 'y_scale', 'n', 'guard', 'compare', 'slider'];
let mapControlsBuilt = null;
let mapSeq = 0;
let mapDrawnSeq = 0;
let mapInFlight = false;
let mapQueued = false;
let mapLastSent = 0;
let mapData = null;
let hoverSeq = 0;

function sliderRange(f) {
  const min = typeof f.min === 'number' ? f.min : 0;
  let max = typeof f.max === 'number' ? f.max : null;
  if (max === null) max = Math.max(min + 1, (typeof f.default === 'number' && f.default > 0 ? f.default * 4 : 100));
  const step = f.type === 'integer' ? Math.max(1, Math.round((max - min) / 100)) : Number(((max - min) / 100).toPrecision(2));
  return { min, max, step };
}

function buildMapControls() {
  const nums = numericFields();
  const opts = (sel, value, exclude) => {
    replace(sel, nums.filter((f) => !exclude || !exclude.includes(f.name)).map((f) => el('option', { value: f.name, text: f.name })));
    sel.value = value;
  };
  opts($('map-x'), mapState.x);
  opts($('map-y'), mapState.y);
  mapControlsBuilt = ctx.revision;
}

function refreshSliderField() {
  const nums = numericFields().filter((f) => f.name !== mapState.x && f.name !== mapState.y);
  const sel = $('map-slider-field');
  replace(sel, nums.map((f) => el('option', { value: f.name, text: f.name })));
  if (!nums.some((f) => f.name === mapState.slider)) {
    mapState.slider = (nums.find((f) => f.name === 'quality_target') || nums[0] || {}).name || '';
    mapState.sliderValue = '';
  }
  sel.value = mapState.slider;
  const f = fieldByName(mapState.slider);
  const s = $('map-slider');
  if (!f) {
    s.disabled = true;
    return;
  }
  s.disabled = false;
  const r = sliderRange(f);
  s.min = String(r.min);
  s.max = String(r.max);
  s.step = String(r.step);
  if (mapState.sliderValue === '') {
    const fromPg = Number(pgValues[f.name]);
    mapState.sliderValue = String(pgValues[f.name] !== undefined && pgValues[f.name] !== '' && Number.isFinite(fromPg) ? fromPg : (f.default ?? r.min));
  }
  s.value = mapState.sliderValue;
  $('map-slider-value').textContent = `${f.name} = ${mapState.sliderValue}`;
}

function syncMapControls() {
  $('map-x').value = mapState.x;
  $('map-y').value = mapState.y;
  for (const k of ['x_min', 'x_max', 'y_min', 'y_max']) $(`map-${k.replace('_', '-')}`).value = mapState[k];
  $('map-x-scale').value = mapState.x_scale;
  $('map-y-scale').value = mapState.y_scale;
  $('map-res').value = mapState.n;
  $('map-guard-off').checked = mapState.guard === 'off';
  refreshSliderField();
}

async function refreshCompareOptions() {
  let st;
  try {
    st = await api('GET', '/api/v1/rules/status');
  } catch (_) {
    return;
  }
  const sel = $('map-compare');
  const keep = mapState.compare;
  replace(sel, el('option', { value: '', text: '(none)' }),
    (st.kept_revisions || []).filter((k) => k.revision !== st.revision).map((k) => el('option', { value: k.revision, text: `${k.revision} (${fmtTime(k.loaded_at)})` })));
  sel.value = keep;
  if (sel.value !== keep) {
    sel.append(el('option', { value: keep, text: keep }));
    sel.value = keep;
  }
}

async function showMap(params) {
  await loadContext();
  // Field values from the link (or the playground's), map settings from the link.
  const fields = {};
  let hasFields = false;
  for (const [k, v] of params) {
    if (MAP_KEYS.includes(k)) mapState[k] = v;
    else if (k === 'value') mapState.sliderValue = v;
    else if (fieldByName(k)) {
      fields[k] = v;
      hasFields = true;
    }
  }
  if (hasFields) pgValues = fields;
  if (!params.has('value') && params.has('slider')) mapState.sliderValue = '';
  if (mapControlsBuilt !== ctx.revision) buildMapControls();
  syncMapControls();
  updateNavLinks();
  refreshCompareOptions();
  chartIn($('map-chart'));
  requestMap();
}

function mapQuery() {
  const q = new URLSearchParams();
  const fixed = { ...pgValues };
  delete fixed[mapState.x];
  delete fixed[mapState.y];
  if (mapState.slider) fixed[mapState.slider] = mapState.sliderValue;
  for (const [k, v] of Object.entries(inputBody(fixed))) q.set(k, String(v));
  q.set('x', mapState.x);
  q.set('y', mapState.y);
  for (const k of ['x_min', 'x_max', 'y_min', 'y_max']) if (mapState[k].trim() !== '') q.set(k, mapState[k].trim());
  q.set('x_scale', mapState.x_scale);
  q.set('y_scale', mapState.y_scale);
  q.set('nx', mapState.n);
  q.set('ny', mapState.n);
  q.set('guard', mapState.guard);
  if (mapState.compare) q.set('compare', mapState.compare);
  return q;
}

function mapHash() {
  const q = valuesQuery(pgValues);
  for (const k of MAP_KEYS) if (mapState[k] !== '') q.set(k, mapState[k]);
  if (mapState.slider && mapState.sliderValue !== '') q.set('value', mapState.sliderValue);
  return `#/map?${q}`;
}

/** Throttled: one request in flight; changes meanwhile send the latest state when it returns. */
function requestMap() {
  if (current.page !== 'map') return;
  if (mapInFlight) {
    mapQueued = true;
    return;
  }
  const wait = 60 - (Date.now() - mapLastSent);
  if (wait > 0) {
    mapInFlight = true;
    setTimeout(() => {
      mapInFlight = false;
      requestMap();
    }, wait);
    return;
  }
  mapQueued = false;
  mapInFlight = true;
  mapLastSent = Date.now();
  const seq = ++mapSeq;
  const q = mapQuery();
  setHashQuiet(mapHash());
  const node = $('map-chart');
  node.dataset.pending = String(seq);
  api('GET', `/api/v1/rules/map?${q}`).then((m) => {
    if (seq < mapDrawnSeq) return; // a stale answer
    mapDrawnSeq = seq;
    clear($('map-error'));
    for (const n of document.querySelectorAll('#map-form .invalid')) n.classList.remove('invalid');
    drawMap(m, q.toString());
  }, (e) => {
    if (seq < mapDrawnSeq) return;
    showError($('map-error'), e, 'map');
    for (const d of e.details || []) {
      const name = d && d.field ? String(d.field) : '';
      const id = { x: 'map-x', y: 'map-y', x_min: 'map-x-min', x_max: 'map-x-max', y_min: 'map-y-min', y_max: 'map-y-max', nx: 'map-res', ny: 'map-res' }[name];
      if (id) $(id).classList.add('invalid');
    }
  }).finally(() => {
    mapInFlight = false;
    if (mapQueued) requestMap();
  });
}

function labelIndexColours(labels) {
  return labels.map((l) => optimizerColour(l));
}

function drawMap(m, query) {
  mapData = m;
  const node = $('map-chart');
  const nx = m.x.values.length;
  const ny = m.y.values.length;
  const colours = labelIndexColours(m.labels);
  const data = new Array(m.cells.length);
  const counts = new Array(m.labels.length).fill(0);
  let noFit = 0;
  for (let j = 0; j < ny; j += 1) {
    for (let i = 0; i < nx; i += 1) {
      const v = m.cells[j * nx + i];
      data[j * nx + i] = [i, j, v];
      if (v >= 0) counts[v] += 1;
      else noFit += 1;
    }
  }
  const pieces = [{ value: -1, color: NO_FIT_COLOUR, label: 'no rule fits' }]
    .concat(m.labels.map((l, k) => ({ value: k, color: colours[k], label: l })));
  const cellRect = (params, apiR) => {
    const p = apiR.coord([apiR.value(0), apiR.value(1)]);
    const s = apiR.size([1, 1]);
    return { x: p[0] - s[0] / 2, y: p[1] - s[1] / 2, width: s[0], height: s[1] };
  };
  const toIJ = (idx) => [idx % nx, Math.floor(idx / nx)];
  const changed = [];
  if (m.compare && Array.isArray(m.compare.cells)) {
    for (let k = 0; k < m.cells.length; k += 1) {
      const a = m.cells[k] >= 0 ? m.labels[m.cells[k]] : null;
      const b = m.compare.cells[k] >= 0 ? m.compare.labels[m.compare.cells[k]] : null;
      if (a !== b) changed.push(toIJ(k));
    }
  }
  const mono = new Set(m.monotone || []);
  const monoEdges = [];
  for (const k of mono) {
    const [i, j] = toIJ(k);
    const inside = (ii, jj) => ii >= 0 && jj >= 0 && ii < nx && jj < ny && mono.has(jj * nx + ii);
    const mask = (inside(i, j + 1) ? 0 : 1) | (inside(i, j - 1) ? 0 : 2) | (inside(i - 1, j) ? 0 : 4) | (inside(i + 1, j) ? 0 : 8);
    if (mask) monoEdges.push([i, j, mask]);
  }
  const xs = m.x.values.map((v) => fmtNum(v));
  const ys = m.y.values.map((v) => fmtNum(v));
  const series = [{
    name: 'decision',
    type: 'heatmap',
    data,
    progressive: 0,
    emphasis: { itemStyle: { borderColor: '#000', borderWidth: 1 } },
  }, {
    name: 'non-monotonic',
    type: 'custom',
    silent: true,
    z: 5,
    // One item per cell of the region with the sides to draw (where the neighbour is outside it),
    // so the region gets an outline instead of a grid.
    data: monoEdges,
    encode: { x: 0, y: 1 },
    renderItem: (params, apiR) => {
      const r = cellRect(params, apiR);
      const mask = apiR.value(2);
      const lines = [];
      const line = (x1, y1, x2, y2) => lines.push({ type: 'line', shape: { x1, y1, x2, y2 }, style: { stroke: '#111', lineWidth: 2 } });
      if (mask & 1) line(r.x, r.y, r.x + r.width, r.y); // j + 1 (above)
      if (mask & 2) line(r.x, r.y + r.height, r.x + r.width, r.y + r.height); // j - 1 (below)
      if (mask & 4) line(r.x, r.y, r.x, r.y + r.height); // i - 1 (left)
      if (mask & 8) line(r.x + r.width, r.y, r.x + r.width, r.y + r.height); // i + 1 (right)
      return { type: 'group', children: lines };
    },
  }, {
    name: 'changed',
    type: 'custom',
    silent: true,
    z: 4,
    data: changed,
    encode: { x: 0, y: 1 },
    renderItem: (params, apiR) => ({ type: 'rect', shape: cellRect(params, apiR), style: { fill: 'rgba(0,0,0,0.55)' } }),
  }];
  const c = chartIn(node);
  c.setOption({
    animation: false,
    grid: { left: 70, right: 16, top: 16, bottom: 58 },
    tooltip: {
      ...tooltipBase,
      trigger: 'item',
      formatter: (p) => {
        if (!p || p.seriesType !== 'heatmap' || !Array.isArray(p.value)) return '';
        const [i, j, v] = p.value;
        const lines = [`${m.x.field} = ${fmtNum(m.x.values[i], 4)}`, `${m.y.field} = ${fmtNum(m.y.values[j], 4)}`,
          v >= 0 ? m.labels[v] : 'no rule fits'];
        if (m.compare) {
          const w = m.compare.cells[j * nx + i];
          lines.push(`${m.compare.revision}: ${w >= 0 ? m.compare.labels[w] : 'no rule fits'}`);
        }
        return lines.map(esc).join('<br>');
      },
    },
    xAxis: { type: 'category', data: xs, name: `${m.x.field} (${m.x.scale})`, nameLocation: 'middle', nameGap: 32, splitArea: { show: false }, axisLabel: { interval: Math.max(0, Math.ceil(nx / 8) - 1) }, axisTick: { show: false } },
    yAxis: { type: 'category', data: ys, name: `${m.y.field} (${m.y.scale})`, nameLocation: 'middle', nameGap: 52, splitArea: { show: false }, axisLabel: { interval: Math.max(0, Math.ceil(ny / 10) - 1) }, axisTick: { show: false } },
    visualMap: { type: 'piecewise', show: false, dimension: 2, seriesIndex: 0, pieces },
    series,
  }, true);
  node.dataset.generation = String(Number(node.dataset.generation || '0') + 1);
  node.dataset.request = query;
  node.dataset.revision = m.revision;
  node.dataset.guard = String(m.guard);
  node.dataset.changed = m.compare ? String(m.compare.changed ?? changed.length) : '';

  // Legend and summary, as HTML (text only; colours through CSSOM).
  const legend = el('ul', { class: 'legend', 'data-testid': 'map-legend' });
  m.labels.forEach((l, k) => {
    const sw = el('span', { class: 'swatch' });
    sw.style.backgroundColor = colours[k];
    legend.append(el('li', { 'data-testid': 'legend-item' }, sw, el('span', { text: `${l} — ${counts[k]} cells` })));
  });
  const nf = el('span', { class: 'swatch' });
  nf.style.backgroundColor = NO_FIT_COLOUR;
  if (noFit) legend.append(el('li', {}, nf, el('span', { text: `no rule fits — ${noFit} cells` })));
  legend.append(el('li', {}, el('span', { class: 'swatch outline' }), el('span', { 'data-testid': 'map-monotone', text: `non-monotonic (guard off): ${(m.monotone || []).length} cells` })));
  const summary = [el('p', { class: 'muted', text: `revision ${m.revision}, guard ${m.guard ? 'on' : 'off'}, ${nx} × ${ny} cells` }), legend];
  if (m.complete === false) summary.push(el('p', { class: 'warn', 'data-testid': 'map-partial', text: 'Partial map: the server stopped evaluating before every cell was done.' }));
  if (m.compare) {
    summary.push(el('p', {}, el('span', { class: 'swatch changed' }), ' ',
      el('strong', { 'data-testid': 'map-changed', text: String(m.compare.changed ?? changed.length) }),
      ` cells decide differently under revision ${m.compare.revision}`));
  }
  replace($('map-summary'), summary);
  const fixed = Object.entries(inputBody(Object.fromEntries(Object.entries({ ...pgValues, [mapState.slider]: mapState.sliderValue })
    .filter(([k]) => k && k !== m.x.field && k !== m.y.field))));
  $('map-fixed').textContent = fixed.length ? `Other inputs: ${fixed.map(([k, v]) => `${k} = ${v}`).join(', ')}` : 'Other inputs: the defaults';
  $('map-x-min').placeholder = fmtNum(m.x.min, 4);
  $('map-x-max').placeholder = fmtNum(m.x.max, 4);
  $('map-y-min').placeholder = fmtNum(m.y.min, 4);
  $('map-y-max').placeholder = fmtNum(m.y.max, 4);
}

const hoverEvaluate = debounce(async (i, j) => {
  const m = mapData;
  if (!m) return;
  const seq = ++hoverSeq;
  const xf = fieldByName(m.x.field);
  const yf = fieldByName(m.y.field);
  const round = (f, v) => (f && f.type === 'integer' ? Math.round(v) : Number(v.toPrecision(6)));
  const point = { [m.x.field]: round(xf, m.x.values[i]), [m.y.field]: round(yf, m.y.values[j]) };
  const body = { ...inputBody({ ...pgValues, [mapState.slider]: mapState.sliderValue }), ...point };
  const v = m.cells[j * m.x.values.length + i];
  const out = $('map-hover');
  const head = [
    kv([[m.x.field, fmtNum(point[m.x.field], 6)], [m.y.field, fmtNum(point[m.y.field], 6)],
      [`map (guard ${m.guard ? 'on' : 'off'})`, v >= 0 ? m.labels[v] : 'no rule fits', 'label']], 'hover-'),
  ];
  replace(out, head, el('p', { class: 'muted', text: 'evaluating…' }));
  try {
    const d = await api('POST', '/api/v1/rules/evaluate', body);
    if (seq !== hoverSeq) return;
    replace(out, head, kv([
      ['decision', `${d.recommended}${variantOf(d) ? ` (${variantOf(d)})` : ''}`, 'optimizer'],
      ['cost', fmtUsd(d.estimated_cost), 'cost'],
      ['time', `${d.estimated_time_minutes} min`, 'minutes'],
      ['confidence', fmtPct(d.confidence)],
      ['rule', d.rule],
    ], 'hover-'), el('p', { class: 'reasoning', text: d.reasoning }));
  } catch (e) {
    if (seq !== hoverSeq) return;
    const err = el('div', { class: 'error' });
    showError(err, e);
    replace(out, head, err);
  }
}, 200);

function wireMapControls() {
  const redraw = () => requestMap();
  const typed = debounce(redraw, 350);
  $('map-x').addEventListener('change', (e) => {
    if (e.target.value === mapState.y) mapState.y = mapState.x;
    mapState.x = e.target.value;
    mapState.x_min = mapState.x_max = '';
    syncMapControls();
    redraw();
  });
  $('map-y').addEventListener('change', (e) => {
    if (e.target.value === mapState.x) mapState.x = mapState.y;
    mapState.y = e.target.value;
    mapState.y_min = mapState.y_max = '';
    syncMapControls();
    redraw();
  });
  for (const k of ['x_min', 'x_max', 'y_min', 'y_max']) {
    $(`map-${k.replace('_', '-')}`).addEventListener('input', (e) => {
      mapState[k] = e.target.value;
      typed();
    });
  }
  $('map-x-scale').addEventListener('change', (e) => { mapState.x_scale = e.target.value; redraw(); });
  $('map-y-scale').addEventListener('change', (e) => { mapState.y_scale = e.target.value; redraw(); });
  $('map-res').addEventListener('change', (e) => { mapState.n = e.target.value; redraw(); });
  $('map-guard-off').addEventListener('change', (e) => { mapState.guard = e.target.checked ? 'off' : 'on'; redraw(); });
  $('map-compare').addEventListener('change', (e) => { mapState.compare = e.target.value; redraw(); });
  $('map-slider-field').addEventListener('change', (e) => {
    mapState.slider = e.target.value;
    mapState.sliderValue = '';
    refreshSliderField();
    redraw();
  });
  $('map-slider').addEventListener('input', (e) => {
    mapState.sliderValue = e.target.value;
    $('map-slider-value').textContent = `${mapState.slider} = ${mapState.sliderValue}`;
    redraw();
  });
  const c = chartIn($('map-chart'));
  c.on('mouseover', (p) => {
    if (p.seriesType === 'heatmap' && Array.isArray(p.value)) hoverEvaluate(p.value[0], p.value[1]);
  });
}

// ---------------------------------------------------------------- 3. rules

async function showRules() {
  clear($('rules-message'));
  await renderRulesStatus();
}

async function renderRulesStatus() {
  const out = $('rules-status');
  let st;
  try {
    st = await api('GET', '/api/v1/rules/status');
  } catch (e) {
    showError(out, e, 'status');
    return;
  }
  $('revision').textContent = `rules ${st.revision}`;
  clear(out);
  out.dataset.revision = st.revision;
  out.append(kv([
    ['revision', st.revision, 'revision'],
    ['state', el('span', { class: `pill ${st.state}`, text: st.state }), 'state'],
    ['loaded at', fmtTime(st.loaded_at)],
    ['directory', el('span', { class: 'mono', text: st.dir ?? '—' })],
    ['fixtures', st.fixtures ? (st.fixtures.checked ? `${st.fixtures.passed} passed, ${st.fixtures.failed} failed` : 'not checked') : '—', 'fixtures'],
    ['reloads', `${st.reloads_ok ?? 0} ok, ${st.reloads_failed ?? 0} refused`],
    ['rolled back from', st.rolled_back_from ?? '—'],
  ], 'rules-'));
  if (st.fixtures && Array.isArray(st.fixtures.failures) && st.fixtures.failures.length) {
    out.append(el('h2', { text: 'Failed fixtures' }), el('pre', { text: json(st.fixtures.failures) }));
  }
  out.append(el('h2', { text: 'Last error' }));
  if (st.last_error) {
    const le = st.last_error;
    const box = el('div', { 'data-testid': 'rules-last-error' }, el('p', { class: 'muted', text: `at ${fmtTime(le.at)}` }));
    for (const d of le.diagnostics || []) box.append(diagnostic(d));
    if (le.message) box.append(el('p', { text: le.message }));
    out.append(box);
  } else out.append(el('p', { class: 'muted', 'data-testid': 'rules-last-error', text: 'none' }));
  out.append(el('h2', { text: 'Kept revisions' }));
  out.append(table(['revision', 'loaded at', ''], (st.kept_revisions || []).map((k) => ({
    testid: `kept-${k.revision}`,
    cells: [el('span', { class: 'mono', text: k.revision }), fmtTime(k.loaded_at),
      k.revision === st.revision ? el('span', { class: 'pill loaded', text: 'serving' })
        : el('button', { type: 'button', class: 'secondary', 'data-testid': `rollback-${k.revision}`, onclick: () => rollback(k.revision), text: 'Roll back to this' })],
  })), { testid: 'rules-kept' }));
  out.append(el('details', {}, el('summary', { text: `Files (${(st.files || []).length})` }),
    el('ul', {}, (st.files || []).map((f) => el('li', { class: 'mono', text: f })))));
}

async function rollback(revision) {
  const msg = $('rules-message');
  replace(msg, el('p', { class: 'muted', text: `rolling back to ${revision}…` }));
  try {
    const r = await api('POST', '/api/v1/rules/rollback', { revision });
    replace(msg, el('p', { class: 'ok', 'data-testid': 'rules-result', text: `${r.result ?? 'done'}: serving ${r.status ? r.status.revision : revision}` }));
    loadContext(true).catch(() => {});
  } catch (e) {
    showError(msg, e, 'rollback refused');
  }
  await renderRulesStatus();
}

async function reloadRules() {
  const msg = $('rules-message');
  replace(msg, el('p', { class: 'muted', text: 'reloading…' }));
  try {
    const r = await api('POST', '/api/v1/rules/reload');
    replace(msg, el('p', { class: 'ok', 'data-testid': 'rules-result', text: `${r.result ?? 'done'}: serving ${r.status ? r.status.revision : ''}` }));
    loadContext(true).catch(() => {});
  } catch (e) {
    const box = el('div', { class: 'error', 'data-testid': 'rules-reload-error' });
    showError(box, e, 'reload refused');
    replace(msg, box);
  }
  await renderRulesStatus();
}

// ---------------------------------------------------------------- 4. jobs

const jobsState = { cursors: [''], page: 0, next: null };
let jobTimer = null;
let jobVersion = null;
let jobHitlShownFor = null;

async function showJobs(id) {
  const list = $('jobs-list-view');
  const detail = $('job-detail-view');
  list.hidden = Boolean(id);
  detail.hidden = !id;
  if (id) return showJob(id);
  return loadJobs();
}

async function loadJobs() {
  const q = new URLSearchParams();
  const status = $('jobs-status').value;
  const type = $('jobs-type').value.trim();
  if (status) q.set('status', status);
  if (type) q.set('type', type);
  q.set('limit', $('jobs-limit').value);
  const cursor = jobsState.cursors[jobsState.page];
  if (cursor) q.set('cursor', cursor);
  clear($('jobs-error'));
  let page;
  try {
    page = await api('GET', `/api/v1/jobs?${q}`);
  } catch (e) {
    showError($('jobs-error'), e);
    return;
  }
  jobsState.next = page.next_cursor || null;
  const out = $('jobs-list');
  if (!page.jobs.length) {
    replace(out, el('p', { class: 'empty', text: jobsState.page ? 'No more jobs.' : 'No jobs match.' }));
  } else {
    replace(out, table(['id', 'type', 'status', 'task', 'progress', 'created', 'updated'], page.jobs.map((j) => ({
      testid: `job-row-${j.id}`,
      cells: [el('a', { href: `#/jobs/${encodeURIComponent(j.id)}`, class: 'mono', text: j.id.slice(0, 8), title: j.id }), j.job_type,
        el('span', { class: `pill ${j.status}`, text: j.status }), j.task || '—',
        `${Math.round((j.progress && j.progress.percent) || 0)}%${j.progress && j.progress.phase ? ` ${j.progress.phase}` : ''}`,
        fmtTime(j.created_at), fmtTime(j.updated_at)],
    })), { testid: 'jobs-table' }));
  }
  $('jobs-prev').disabled = jobsState.page === 0;
  $('jobs-first').disabled = jobsState.page === 0;
  $('jobs-next').disabled = !jobsState.next;
}

function stopJobPolling() {
  if (jobTimer) clearTimeout(jobTimer);
  jobTimer = null;
}

async function showJob(id) {
  stopJobPolling();
  jobVersion = null;
  jobHitlShownFor = null;
  clear($('job-detail'));
  clear($('job-hitl'));
  clear($('job-error'));
  pageCleanup = stopJobPolling;
  const tick = async () => {
    if (current.page !== 'jobs' || current.arg !== id) return;
    await refreshJob(id);
    if (current.page === 'jobs' && current.arg === id) jobTimer = setTimeout(tick, 1500);
  };
  await tick();
}

async function refreshJob(id) {
  let job;
  try {
    job = await api('GET', `/api/v1/jobs/${encodeURIComponent(id)}`);
  } catch (e) {
    showError($('job-error'), e);
    return;
  }
  clear($('job-error'));
  if (job.version === jobVersion) return;
  jobVersion = job.version;
  const p = job.progress || { percent: 0 };
  const out = $('job-detail');
  out.dataset.status = job.status;
  out.dataset.version = String(job.version);
  replace(out,
    el('h2', {}, 'Job ', el('span', { class: 'mono', text: job.id })),
    kv([
      ['status', el('span', { class: `pill ${job.status}`, text: job.status }), 'status'],
      ['type', job.job_type], ['task', job.task || '—', 'task'],
      ['progress', el('span', {}, el('progress', { max: '100', value: String(Math.max(0, Math.min(100, p.percent || 0))) }),
        ` ${Math.round(p.percent || 0)}%${p.phase ? ` · ${p.phase}` : ''}${p.message ? ` · ${p.message}` : ''}`), 'progress'],
      ['attempts', `${job.attempt} of ${job.max_attempts}`],
      ['lease', job.lease ? `${job.lease.owner} until ${fmtTime(job.lease.expires_at)}` : '—'],
      ['user', job.user_id ?? '—'], ['created', fmtTime(job.created_at)], ['started', fmtTime(job.started_at)],
      ['updated', fmtTime(job.updated_at)], ['completed', fmtTime(job.completed_at)], ['error', job.error ?? '—', 'error'],
    ], 'job-'),
    TERMINAL.has(job.status) ? null : el('div', { class: 'actions' },
      el('button', { type: 'button', class: 'danger', 'data-testid': 'job-cancel', onclick: () => cancelJob(job.id), text: 'Cancel job' })),
    el('h3', { text: 'Payload' }), el('pre', { 'data-testid': 'job-payload', text: json(job.payload) }),
    job.result !== null && job.result !== undefined ? [el('h3', { text: 'Result' }), el('pre', { 'data-testid': 'job-result', text: json(job.result) })] : null,
    job.hitl ? [el('h3', { text: `Question (${job.hitl.type})` }), el('pre', { text: json(job.hitl.data) }),
      job.hitl.response !== null && job.hitl.response !== undefined ? [el('h3', { text: 'Answer' }), el('pre', { 'data-testid': 'job-hitl-answer', text: json(job.hitl.response) })] : null] : null);
  if (job.status === 'pending_hitl') {
    if (jobHitlShownFor !== job.version) await renderHitl(job);
  } else {
    clear($('job-hitl'));
    jobHitlShownFor = null;
  }
}

async function renderHitl(job) {
  const box = $('job-hitl');
  let h;
  try {
    h = await api('GET', `/api/v1/jobs/${encodeURIComponent(job.id)}/hitl`);
  } catch (e) {
    showError(box, e, 'question');
    return;
  }
  jobHitlShownFor = job.version;
  const err = el('div', { class: 'error', 'data-testid': 'hitl-error' });
  const text = el('textarea', { 'data-testid': 'hitl-json', placeholder: '{"approved": true, "note": "..."}', 'aria-label': 'answer as JSON' });
  const send = async (response) => {
    clear(err);
    for (const b of box.querySelectorAll('button')) b.disabled = true;
    try {
      await api('POST', `/api/v1/jobs/${encodeURIComponent(job.id)}/hitl/response`, { response });
      replace(box, el('p', { class: 'ok', 'data-testid': 'hitl-sent', text: 'Answer sent; the job goes back to pending.' }));
      jobVersion = null;
      await refreshJob(job.id);
    } catch (e) {
      showError(err, e, 'answer refused');
      for (const b of box.querySelectorAll('button')) b.disabled = false;
    }
  };
  replace(box, el('div', { class: 'hitl', 'data-testid': 'hitl-question' },
    el('h3', { text: `A worker asks: ${h.type}` }),
    el('pre', { 'data-testid': 'hitl-data', text: json(h.data) }),
    el('div', { class: 'actions' },
      el('button', { type: 'button', 'data-testid': 'hitl-approve', onclick: () => send({ approved: true }), text: 'Approve' }),
      el('button', { type: 'button', class: 'danger', 'data-testid': 'hitl-refuse', onclick: () => send({ approved: false }), text: 'Refuse' })),
    el('label', { text: 'Or answer with JSON:' }), text,
    el('div', { class: 'actions' }, el('button', {
      type: 'button', class: 'secondary', 'data-testid': 'hitl-send-json', text: 'Send JSON answer',
      onclick: () => {
        let v;
        try {
          v = JSON.parse(text.value);
        } catch (e) {
          err.textContent = `not JSON: ${e.message}`;
          return;
        }
        send(v);
      },
    })), err));
}

async function cancelJob(id) {
  try {
    await api('POST', `/api/v1/jobs/${encodeURIComponent(id)}/cancel`);
  } catch (e) {
    showError($('job-error'), e, 'cancel refused');
  }
  jobVersion = null;
  await refreshJob(id);
}

// ---------------------------------------------------------------- 5. loop

function stat(k, v, testid) {
  return el('div', { class: 'stat', 'data-testid': testid || null }, el('div', { class: 'v', text: v }), el('div', { class: 'k', text: k }));
}

function rateText(r) {
  return r ? `${fmtPct(r.rate)} (${r.count} of ${r.of})` : 'no data yet';
}

async function showLoop() {
  await loadContext().catch(() => null); // for the optimizer colours only
  const since = $('loop-since').value;
  clear($('loop-error'));
  const [metrics, timeline, training] = await Promise.allSettled([
    api('GET', `/api/v1/optimization/metrics?since=${encodeURIComponent(since)}`),
    api('GET', '/api/v1/optimization/timeline?since=7d&buckets=24'),
    api('GET', '/api/v2/training/analytics'),
  ]);
  const errs = [];
  if (metrics.status === 'fulfilled') renderMetrics(metrics.value);
  else {
    errs.push(['metrics', metrics.reason]);
    emptyChart($('loop-decisions'), 'metrics unavailable');
    emptyChart($('loop-mape'), 'metrics unavailable');
  }
  if (timeline.status === 'fulfilled') renderTimeline(timeline.value);
  else {
    errs.push(['timeline', timeline.reason]);
    emptyChart($('loop-timeline'), 'timeline unavailable');
  }
  if (training.status === 'fulfilled') renderTraining(training.value);
  else errs.push(['training analytics', training.reason]);
  const box = $('loop-error');
  for (const [what, e] of errs) {
    const d = el('div');
    showError(d, e, what);
    box.append(d);
  }
}

function renderMetrics(m) {
  const dec = m.decisions || { total: 0, by_optimizer: {} };
  replace($('loop-stats'),
    stat('decisions', String(dec.total ?? 0), 'stat-decisions'),
    stat('outcomes', String(m.outcomes ?? 0), 'stat-outcomes'),
    stat('auto-selected / manual', `${m.auto_selected ?? 0} / ${m.manual ?? 0}`),
    stat('acceptance', rateText(m.acceptance), 'stat-acceptance'),
    stat('target hit', rateText(m.target_hit), 'stat-target-hit'));
  const byOpt = Object.entries(dec.by_optimizer || {});
  if (!byOpt.length) emptyChart($('loop-decisions'), `No decisions yet in this window (${m.window ?? ''}).`);
  else {
    barChart($('loop-decisions'), byOpt.map(([k]) => k), [{
      name: 'decisions', data: byOpt.map(([k, v]) => ({ value: v, itemStyle: { color: optimizerColour(k) } })),
    }], { integer: true, rotate: byOpt.length > 4 ? 30 : 0 });
  }
  const acc = Object.entries(m.accuracy || {});
  if (!acc.length) emptyChart($('loop-mape'), 'No outcomes yet: estimate errors appear once runs report their cost and time.');
  else {
    barChart($('loop-mape'), acc.map(([k]) => k), [
      { name: 'cost MAPE', data: acc.map(([, a]) => a.cost_mape ?? null) },
      { name: 'time MAPE', data: acc.map(([, a]) => a.time_mape ?? null) },
    ], { rotate: acc.length > 4 ? 30 : 0, unit: '%' });
    const note = acc.map(([k, a]) => `${k}: ${a.outcomes} outcome(s), mean quality ${fmtNum(a.mean_quality)}`).join(' · ');
    $('loop-mape').title = note;
  }
}

function renderTimeline(t) {
  const buckets = t.buckets || [];
  const names = [...new Set(buckets.flatMap((b) => Object.keys(b.by_optimizer || {})))].sort();
  const node = $('loop-timeline');
  if (!names.length) {
    emptyChart(node, 'No decisions yet in the last 7 days.');
    return;
  }
  const short = (s) => {
    const d = new Date(s);
    return Number.isNaN(d.getTime()) ? String(s) : d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  };
  barChart(node, buckets.map((b) => short(b.start)), names.map((n) => ({
    name: n, data: buckets.map((b) => (b.by_optimizer || {})[n] || 0), itemStyle: { color: optimizerColour(n) },
  })), { stack: true, integer: true });
}

function renderTraining(a) {
  replace($('loop-training-stats'),
    stat('examples', String(a.total_examples ?? 0), 'stat-examples'),
    stat('underrepresented', (a.underrepresented || []).length ? a.underrepresented.join(', ') : 'none'));
  const bars = (id, obj, empty) => {
    const entries = Object.entries(obj || {});
    if (!entries.length || entries.every(([, v]) => !v)) emptyChart($(id), empty);
    else barChart($(id), entries.map(([k]) => k), [{ name: 'examples', data: entries.map(([, v]) => v), colorBy: 'data' }], { integer: true, rotate: entries.length > 5 ? 30 : 0 });
  };
  bars('loop-quality', a.quality_distribution, 'No training examples yet.');
  bars('loop-categories', a.category_breakdown, 'No categories yet.');
  bars('loop-styles', a.style_breakdown, 'No styles yet.');
  const gaps = $('loop-gaps');
  clear(gaps);
  if ((a.gaps || []).length) {
    gaps.append(table(['kind', 'name', 'count', 'minimum'], a.gaps.map((g) => [g.kind, g.name, g.count, g.minimum])));
  } else gaps.append(el('p', { class: 'empty', text: 'No gaps.' }));
  gaps.append(el('h3', { text: 'Recommendations' }));
  if ((a.recommendations || []).length) gaps.append(el('ul', { 'data-testid': 'loop-recommendations' }, a.recommendations.map((r) => el('li', { text: typeof r === 'string' ? r : json(r) }))));
  else gaps.append(el('p', { class: 'empty', text: 'None.' }));
  if ((a.top_performers || []).length) {
    gaps.append(el('h3', { text: 'Top performers' }));
    gaps.append(table(['name', 'score', 'success rate'], a.top_performers.map((t) => [t.name, fmtNum(t.score), fmtPct(t.success_rate)])));
  }
}

// ---------------------------------------------------------------- start

function wire() {
  // No form ever submits anywhere (form-action 'none'): handlers do the work.
  document.addEventListener('submit', (e) => e.preventDefault(), true);
  $('rules-reload').addEventListener('click', reloadRules);
  $('rules-refresh').addEventListener('click', () => { clear($('rules-message')); renderRulesStatus(); });
  $('jobs-filters').addEventListener('submit', () => {
    jobsState.cursors = [''];
    jobsState.page = 0;
    loadJobs();
  });
  for (const id of ['jobs-status', 'jobs-limit']) {
    $(id).addEventListener('change', () => {
      jobsState.cursors = [''];
      jobsState.page = 0;
      loadJobs();
    });
  }
  $('jobs-next').addEventListener('click', () => {
    if (!jobsState.next) return;
    jobsState.cursors[jobsState.page + 1] = jobsState.next;
    jobsState.page += 1;
    loadJobs();
  });
  $('jobs-prev').addEventListener('click', () => {
    if (jobsState.page > 0) jobsState.page -= 1;
    loadJobs();
  });
  $('jobs-first').addEventListener('click', () => {
    jobsState.page = 0;
    loadJobs();
  });
  $('loop-since').addEventListener('change', () => showLoop());
  wireMapControls();
  window.addEventListener('hashchange', route);
}

function start() {
  if (!window.echarts) {
    const g = $('global-error');
    g.hidden = false;
    g.textContent = 'The chart library did not load.';
  }
  wire();
  document.body.dataset.ready = '1';
  route();
}

start();
