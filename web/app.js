// The zmesh dashboard: one script, no framework, no build step.
//
// Rules this file keeps (docs/DASHBOARD.md):
// - Every string that comes from a user or a function reaches the page as
//   text: elements are built with createElement and filled with textContent
//   (el() below); innerHTML is never used.
// - Every request goes to the daemon that served the page (relative URLs).
// - The session token lives in sessionStorage: it survives a reload of the
//   tab, is gone when the tab is closed, and is never sent by the browser on
//   its own (it is not a cookie), so no cross-site request can use it.
'use strict';

const SESSION_KEY = 'zmesh.session';
const LANGS = ['javascript', 'python'];
const TEMPLATES = {
	javascript: 'exports.handler = async (payload, zmesh) => {\n  console.log("hello from zmesh");\n  return { hello: payload && payload.name ? payload.name : "world" };\n};\n',
	python: 'def handler(payload, zmesh):\n    print("hello from zmesh")\n    name = payload.get("name") if isinstance(payload, dict) else None\n    return {"hello": name or "world"}\n',
};
const DIFF_MAX_LINES = 3000;
const STATS_WINDOW = 100;
const STATS_MAX_FUNCTIONS = 25;
const SVG = 'http://www.w3.org/2000/svg';
const EGRESS_MODES = ['open', 'allowlist', 'none'];
// The API's rule for an env var's name (validate.c); the API also refuses
// reserved names, and its message is shown.
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
// The payload a "Re-run with this payload" hands to the Invoke tab:
// {fid, text}, taken once.
let rerun = null;

// ---- DOM helpers ------------------------------------------------------------

// el('div', {class: 'x', onclick: fn}, 'text', child, ...): attributes are set
// with setAttribute (never an on* attribute: functions become listeners),
// children are nodes or strings (text nodes). null/false children are skipped.
function el(tag, attrs, ...children) {
	const e = document.createElement(tag);
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v === null || v === undefined || v === false)
			continue;
		if (typeof v === 'function' && k.startsWith('on'))
			e.addEventListener(k.slice(2), v);
		else if (k === 'value')
			e.value = v;
		else if (k.startsWith('on'))
			throw new Error('no inline handlers');
		else
			e.setAttribute(k, v === true ? '' : String(v));
	}
	append(e, children);
	return e;
}

function append(parent, children) {
	for (const c of children.flat(Infinity)) {
		if (c === null || c === undefined || c === false)
			continue;
		parent.append(c instanceof Node ? c : document.createTextNode(String(c)));
	}
	return parent;
}

let uid = 0;
// A labelled form control: <label for=id>text</label><input id=id>.
function field(label, control, hint) {
	const id = control.id || 'f' + ++uid;
	control.id = id;
	return el('div', {class: 'field'}, el('label', {for: id}, label), control,
		hint ? el('small', {class: 'hint'}, hint) : null);
}

function alertBox() {
	return el('p', {class: 'error', role: 'alert', hidden: true});
}

function showError(box, err) {
	box.textContent = err instanceof ApiError ? err.describe() : String(err && err.message ? err.message : err);
	box.hidden = false;
}

function fmtTime(s) {
	if (!s)
		return '—';
	const d = new Date(s);
	if (isNaN(d))
		return String(s);
	return d.toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

function fmtMs(v) {
	return typeof v === 'number' ? (v < 10 ? v.toFixed(1) : Math.round(v)) + ' ms' : '—';
}

function fmtBytes(v) {
	if (typeof v !== 'number')
		return '—';
	if (v >= 1 << 20)
		return (v / (1 << 20)).toFixed(1) + ' MiB';
	if (v >= 1024)
		return (v / 1024).toFixed(1) + ' KiB';
	return v + ' B';
}

// A result as JSON, so that "1" and 1 look different.
function pretty(v) {
	return v === undefined ? 'null' : JSON.stringify(v, null, 2);
}

function table(headers, rows, caption) {
	return el('div', {class: 'table-wrap'},
		el('table', {}, caption ? el('caption', {}, caption) : null,
			el('thead', {}, el('tr', {}, headers.map((t) => el('th', {scope: 'col'}, t)))),
			el('tbody', {}, rows)));
}

function statusBadge(s) {
	return el('span', {class: 'badge badge-' + (/^[a-z_]+$/.test(s || '') ? s : 'other')}, s || '—');
}

function flash(text) {
	const f = document.getElementById('flash');
	f.textContent = text;
	f.hidden = !text;
}

// A modal confirmation (the page's own <dialog>): resolves true on Confirm.
function confirmDialog(title, text, okLabel) {
	const d = document.getElementById('confirm');
	document.getElementById('confirm-title').textContent = title;
	document.getElementById('confirm-text').textContent = text;
	document.getElementById('confirm-ok').textContent = okLabel;
	d.returnValue = '';
	return new Promise((resolve) => {
		d.addEventListener('close', () => resolve(d.returnValue === 'ok'), {once: true});
		d.showModal();
	});
}

// ---- session ------------------------------------------------------------------

function loadSession() {
	try {
		const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
		return s && typeof s.token === 'string' ? s : null;
	} catch {
		return null;
	}
}

// Seconds since the epoch at which a JWT expires, from its payload (not
// verified here: the daemon does that); null when it cannot be read.
function tokenExpiry(token) {
	try {
		const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
		const claims = JSON.parse(atob(part + '='.repeat((4 - part.length % 4) % 4)));
		return typeof claims.exp === 'number' ? claims.exp : null;
	} catch {
		return null;
	}
}

let session = loadSession();
let signInMessage = '';

function endSession(message) {
	session = null;
	sessionStorage.removeItem(SESSION_KEY);
	signInMessage = message || '';
	if (location.hash !== '' && location.hash !== '#/')
		history.replaceState(null, '', location.pathname + location.search);
	render();
}

// ---- API ------------------------------------------------------------------------

class ApiError extends Error {
	constructor(status, code, message) {
		super(message || 'request failed (' + status + ')');
		this.status = status;
		this.code = code || 'HTTP_' + status;
	}
	describe() {
		return this.message + ' (' + this.code + ')';
	}
}

class SessionEnded extends Error {}

async function api(method, path, body, opts) {
	const headers = {Accept: 'application/json'};
	if (session) {
		const exp = tokenExpiry(session.token);
		if (exp !== null && exp * 1000 <= Date.now()) {
			endSession('Your session has expired. Sign in again.');
			throw new SessionEnded();
		}
		headers.Authorization = 'Bearer ' + session.token;
	}
	const init = {method, headers, credentials: 'omit', cache: 'no-store', redirect: 'error'};
	if (body !== undefined) {
		headers['Content-Type'] = 'application/json';
		init.body = JSON.stringify(body);
	}
	let res;
	try {
		res = await fetch(path, init);
	} catch (e) {
		throw new ApiError(0, 'NETWORK', 'the daemon could not be reached');
	}
	let data = null;
	try {
		data = await res.json();
	} catch {
		data = null;
	}
	if (res.status === 401 && session && !(opts && opts.keepSession)) {
		endSession('Your session has expired or is no longer valid. Sign in again.');
		throw new SessionEnded();
	}
	if (!res.ok && !(opts && opts.anyStatus)) {
		const e = data && data.error;
		throw new ApiError(res.status, e && e.code, e && e.message);
	}
	return opts && opts.anyStatus ? {status: res.status, data} : data;
}

const enc = encodeURIComponent;
const P = (pid) => '/projects/' + enc(pid);
const F = (pid, fid) => P(pid) + '/functions/' + enc(fid);

// ---- router -----------------------------------------------------------------------

function route() {
	const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
	if (parts.length === 0)
		return {view: viewProjects};
	if (parts[0] === 'p' && parts.length === 2)
		return {view: viewProject, pid: parts[1]};
	if (parts[0] === 'p' && parts[2] === 'f' && parts.length >= 4) {
		const r = {pid: parts[1], fid: parts[3]};
		if (parts.length === 4)
			return {...r, view: viewFunction, tab: 'code'};
		if (parts.length === 5 && ['code', 'invoke', 'history', 'versions'].includes(parts[4]))
			return {...r, view: viewFunction, tab: parts[4]};
		if (parts.length === 6 && parts[4] === 'inv')
			return {...r, view: viewFunction, tab: 'history', iid: parts[5]};
	}
	return {view: viewNotFound};
}

function href(...parts) {
	return '#/' + parts.map(enc).join('/');
}

let renderSeq = 0;
let keepFlash = false;

async function render() {
	const seq = ++renderSeq;
	const main = document.getElementById('main');
	const who = document.getElementById('who');
	if (!session) {
		who.hidden = true;
		flash('');
		main.replaceChildren(viewSignIn());
		document.title = 'Sign in · zmesh functions';
		return;
	}
	who.hidden = false;
	document.getElementById('who-email').textContent = session.email || '';
	const r = route();
	main.replaceChildren(el('p', {class: 'loading'}, 'Loading…'));
	main.setAttribute('aria-busy', 'true');
	try {
		const node = await r.view(r);
		if (seq !== renderSeq)
			return;
		main.replaceChildren(node);
	} catch (e) {
		if (e instanceof SessionEnded || seq !== renderSeq)
			return;
		const box = alertBox();
		showError(box, e);
		main.replaceChildren(el('h1', {}, 'Something went wrong'), box, el('p', {}, el('a', {href: '#/'}, 'Back to projects')));
	} finally {
		if (seq === renderSeq)
			main.removeAttribute('aria-busy');
	}
}

function crumbs(...items) {
	const ol = el('ol', {});
	items.forEach(([label, link], i) => {
		const last = i === items.length - 1;
		ol.append(el('li', {}, link && !last ? el('a', {href: link}, label) : el('span', last ? {'aria-current': 'page'} : {}, label)));
	});
	return el('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, ol);
}

// ---- sign in ----------------------------------------------------------------------

function viewSignIn() {
	const email = el('input', {type: 'email', name: 'email', autocomplete: 'username', required: true});
	const password = el('input', {type: 'password', name: 'password', autocomplete: 'current-password', required: true});
	const box = alertBox();
	const note = signInMessage ? el('p', {class: 'notice', role: 'alert'}, signInMessage) : null;
	const button = el('button', {type: 'submit', class: 'primary'}, 'Sign in');
	const form = el('form', {class: 'card narrow', onsubmit: async (ev) => {
		ev.preventDefault();
		box.hidden = true;
		button.disabled = true;
		try {
			const r = await api('POST', '/auth/login', {email: email.value, password: password.value});
			session = {token: r.token, expires_at: r.expires_at, email: r.user && r.user.email, admin: !!(r.user && r.user.is_admin)};
			sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
			signInMessage = '';
			render();
		} catch (e) {
			showError(box, e);
			button.disabled = false;
		}
	}}, el('h1', {}, 'Sign in'), note, field('Email', email), field('Password', password), box, button);
	queueMicrotask(() => email.focus());
	return form;
}

// ---- projects -----------------------------------------------------------------------

async function viewProjects() {
	document.title = 'Projects · zmesh functions';
	const {projects} = await api('GET', '/projects');
	const rows = projects.map((p) => el('tr', {},
		el('td', {}, el('a', {href: href('p', p.id)}, p.name)),
		el('td', {}, el('code', {}, p.slug)),
		el('td', {}, p.tier),
		el('td', {}, fmtTime(p.created_at))));
	const name = el('input', {type: 'text', name: 'name', required: true, maxlength: 100, autocomplete: 'off'});
	const box = alertBox();
	const form = el('form', {class: 'card', onsubmit: async (ev) => {
		ev.preventDefault();
		box.hidden = true;
		try {
			const p = await api('POST', '/projects', {name: name.value});
			location.hash = href('p', p.id);
		} catch (e) {
			if (!(e instanceof SessionEnded))
				showError(box, e);
		}
	}}, el('h2', {}, 'New project'), field('Project name', name), box,
	el('button', {type: 'submit', class: 'primary'}, 'Create project'));
	return el('section', {},
		crumbs(['Projects']),
		el('h1', {}, 'Projects'),
		projects.length ? table(['Name', 'Slug', 'Tier', 'Created'], rows) : el('p', {class: 'empty'}, 'No projects yet.'),
		form);
}

async function viewProject(r) {
	const [p, fl, kl, tl, dl, ml] = await Promise.all([api('GET', P(r.pid)), api('GET', P(r.pid) + '/functions'), api('GET', P(r.pid) + '/api-keys'),
		api('GET', P(r.pid) + '/triggers'), api('GET', P(r.pid) + '/dead-letters'), api('GET', P(r.pid) + '/members')]);
	document.title = p.name + ' · zmesh functions';
	// The owner (or an admin) manages members and egress; the daemon
	// decides, the page only spares the others buttons that would be refused.
	const me = ml.members.find((m) => m.email === session.email);
	const manage = !!(session.admin || (me && me.role === 'owner'));
	return el('section', {},
		crumbs(['Projects', '#/'], [p.name]),
		el('h1', {}, p.name),
		el('p', {class: 'meta'}, 'Slug ', el('code', {}, p.slug), ' · tier ', p.tier, ' · created ', fmtTime(p.created_at)),
		functionsSection(p, fl.functions),
		keysSection(p, kl.api_keys, fl.functions),
		triggersSection(p, tl.triggers, fl.functions),
		deadLettersSection(p, dl.dead_letters),
		membersSection(p, ml.members, manage),
		planSection(p, manage),
		projectSettings(p, manage));
}

function functionsSection(p, functions) {
	const rows = functions.map((f, i) => {
		const last = el('td', {}, '…'), day = el('td', {}, '…'), rate = el('td', {}, '…');
		if (i < STATS_MAX_FUNCTIONS)
			fillStats(p, f, last, day, rate);
		else
			for (const c of [last, day, rate])
				c.textContent = '—';
		return el('tr', {},
			el('td', {}, el('a', {href: href('p', p.id, 'f', f.id)}, f.name)),
			el('td', {}, f.language),
			el('td', {}, 'v' + f.version),
			last, day, rate);
	});
	const name = el('input', {type: 'text', name: 'name', required: true, maxlength: 100, autocomplete: 'off'});
	const lang = el('select', {name: 'language'}, LANGS.map((l) => el('option', {value: l}, l)));
	const timeout = el('input', {type: 'number', name: 'timeout_ms', min: 1, step: 1, placeholder: '10000'});
	const memory = el('input', {type: 'number', name: 'memory_mb', min: 1, step: 1, placeholder: '256'});
	const entry = el('input', {type: 'text', name: 'entry_point', placeholder: 'handler', autocomplete: 'off'});
	const envs = envRows();
	const editor = codeEditor('Function code', TEMPLATES.javascript, 'javascript');
	let touched = false;
	editor.textarea.addEventListener('input', () => { touched = true; });
	lang.addEventListener('change', () => {
		editor.setLanguage(lang.value);
		if (!touched)
			editor.setValue(TEMPLATES[lang.value]);
	});
	const box = alertBox();
	const form = el('form', {class: 'card', onsubmit: async (ev) => {
		ev.preventDefault();
		box.hidden = true;
		const body = {name: name.value, language: lang.value, code: editor.textarea.value};
		if (timeout.value)
			body.timeout_ms = Number(timeout.value);
		if (memory.value)
			body.memory_mb = Number(memory.value);
		if (entry.value)
			body.entry_point = entry.value;
		const env = envs.collect(box);
		if (!env)
			return;
		if (Object.keys(env).length)
			body.env_vars = env;
		try {
			const f = await api('POST', P(p.id) + '/functions', body);
			location.hash = href('p', p.id, 'f', f.id);
		} catch (e) {
			if (!(e instanceof SessionEnded))
				showError(box, e);
		}
	}}, el('h3', {}, 'New function'),
	el('div', {class: 'grid'}, field('Function name', name), field('Language', lang),
		field('Timeout (ms)', timeout, 'optional'), field('Memory (MB)', memory, 'optional'),
		field('Entry point', entry, 'optional: handler by default')),
	envs.node,
	editor.node, box, el('button', {type: 'submit', class: 'primary'}, 'Create function'));
	return el('section', {'aria-labelledby': 'fn-h'},
		el('h2', {id: 'fn-h'}, 'Functions'),
		functions.length ? table(['Name', 'Language', 'Version', 'Last invocation', 'Last 24 h', 'Errors (24 h)'], rows) : el('p', {class: 'empty'}, 'No functions yet.'),
		form);
}

// Environment variables as name/value rows, added and removed. Values are
// write-only: the API never shows them again (only the names). collect()
// answers the object to send, or null after showing why not in box.
function envRows() {
	const list = el('div', {class: 'env-rows'});
	const rows = [];
	function renumber() {
		rows.forEach((r, i) => {
			const n = i + 1;
			r.name.setAttribute('aria-label', 'Name of variable ' + n);
			r.value.setAttribute('aria-label', 'Value of variable ' + n);
			r.remove.setAttribute('aria-label', 'Remove variable ' + n);
		});
		list.replaceChildren(...rows.map((r) => r.node));
	}
	function add() {
		const r = {
			name: el('input', {type: 'text', class: 'mono', autocomplete: 'off', spellcheck: 'false', placeholder: 'NAME', maxlength: 256}),
			value: el('input', {type: 'password', class: 'mono', autocomplete: 'new-password', placeholder: 'value'}),
		};
		r.remove = el('button', {type: 'button', onclick: () => {
			rows.splice(rows.indexOf(r), 1);
			renumber();
		}}, 'Remove');
		r.node = el('div', {class: 'env-row'}, r.name, r.value, r.remove);
		rows.push(r);
		renumber();
		r.name.focus();
	}
	const node = el('fieldset', {class: 'env'}, el('legend', {}, 'Environment variables'),
		el('small', {class: 'hint'}, 'optional; kept as secrets: only their names are shown again'),
		list, el('button', {type: 'button', onclick: add}, 'Add variable'));
	function collect(box) {
		const env = {};
		for (const [i, r] of rows.entries()) {
			const name = r.name.value.trim();
			if (!name && !r.value.value)
				continue;
			let why = null;
			if (!ENV_NAME.test(name))
				why = 'the name "' + name + '" is not [A-Za-z_][A-Za-z0-9_]*';
			else if (Object.hasOwn(env, name))
				why = 'the name ' + name + ' is given twice';
			if (why) {
				showError(box, 'Environment variable ' + (i + 1) + ': ' + why);
				r.name.setAttribute('aria-invalid', 'true');
				r.name.focus();
				return null;
			}
			r.name.removeAttribute('aria-invalid');
			env[name] = r.value.value;
		}
		return env;
	}
	return {node, collect};
}

// The last invocation, the count of the last 24 hours and their error rate,
// from the newest STATS_WINDOW invocations (the count says "N+" past that).
async function fillStats(p, f, last, day, rate) {
	try {
		const {invocations} = await api('GET', F(p.id, f.id) + '/invocations?limit=' + STATS_WINDOW);
		const since = Date.now() - 86400000;
		const recent = invocations.filter((i) => new Date(i.started_at).getTime() >= since);
		const errors = recent.filter((i) => i.status !== 'success').length;
		last.replaceChildren(...(invocations.length ? [statusBadge(invocations[0].status), ' ', fmtTime(invocations[0].started_at)] : ['never']));
		day.textContent = recent.length + (recent.length === STATS_WINDOW ? '+' : '');
		rate.textContent = recent.length ? Math.round((100 * errors) / recent.length) + ' %' : '—';
	} catch (e) {
		if (e instanceof SessionEnded)
			return;
		for (const c of [last, day, rate])
			c.textContent = '—';
	}
}

function keysSection(p, keys, functions) {
	const box = alertBox();
	const shown = el('div', {class: 'card secret', hidden: true});
	const rows = keys.map((k) => el('tr', {},
		el('td', {}, k.name),
		el('td', {}, el('code', {}, k.prefix)),
		el('td', {}, fmtTime(k.created_at)),
		el('td', {}, fmtTime(k.last_used_at)),
		el('td', {}, el('button', {type: 'button', class: 'danger', 'aria-label': 'Revoke key ' + k.name, onclick: async () => {
			if (!await confirmDialog('Revoke API key?', 'The key "' + k.name + '" (' + k.prefix + '…) stops working at once.', 'Revoke'))
				return;
			try {
				await api('DELETE', P(p.id) + '/api-keys/' + enc(k.id));
				flash('Revoked key ' + k.name + '.');
				render();
			} catch (e) {
				if (!(e instanceof SessionEnded))
					showError(box, e);
			}
		}}, 'Revoke'))));
	const name = el('input', {type: 'text', name: 'key_name', required: true, maxlength: 100, autocomplete: 'off'});
	const form = el('form', {class: 'card', onsubmit: async (ev) => {
		ev.preventDefault();
		box.hidden = true;
		try {
			const k = await api('POST', P(p.id) + '/api-keys', {name: name.value});
			name.value = '';
			const keyInput = el('input', {type: 'text', readonly: true, value: k.key, class: 'mono', spellcheck: 'false'});
			const copied = el('span', {class: 'hint', role: 'status'});
			const slug = functions.length ? functions[0].slug : 'FUNCTION_SLUG';
			shown.replaceChildren(
				el('h3', {}, 'New API key "', k.name, '"'),
				el('p', {}, 'Copy this key now: it is shown only once.'),
				field('New API key', keyInput),
				el('button', {type: 'button', onclick: async () => {
					keyInput.select();
					try {
						await navigator.clipboard.writeText(k.key);
						copied.textContent = 'Copied.';
					} catch {
						copied.textContent = 'Selected: press Ctrl+C to copy.';
					}
				}}, 'Copy key'), ' ', copied,
				el('p', {}, 'Invoke a function with it:'),
				el('pre', {class: 'code'}, curlFor(slug, k.key)));
			shown.hidden = false;
			keyInput.focus();
			keyInput.select();
			const kl = await api('GET', P(p.id) + '/api-keys');
			section.replaceWith(keysSection(p, kl.api_keys, functions));
			// keep the one-time key visible in the new section
			const again = document.querySelector('#keys-section .secret');
			if (again)
				again.replaceWith(shown);
		} catch (e) {
			if (!(e instanceof SessionEnded))
				showError(box, e);
		}
	}}, el('h3', {}, 'New API key'), field('Key name', name), box, el('button', {type: 'submit', class: 'primary'}, 'Create key'));
	const section = el('section', {'aria-labelledby': 'keys-h', id: 'keys-section'},
		el('h2', {id: 'keys-h'}, 'API keys'),
		shown,
		keys.length ? table(['Name', 'Prefix', 'Created', 'Last used', ''], rows) : el('p', {class: 'empty'}, 'No API keys.'),
		form);
	return section;
}

function triggerSummary(t) {
	const c = t.config || {};
	if (t.event_type === 'cron')
		return c.schedule + (c.timezone ? ' (' + c.timezone + ')' : '');
	if (t.event_type === 'webhook')
		return location.origin + (t.url || '');
	return '';
}

function triggersSection(p, triggers, functions) {
	const box = alertBox();
	const rows = triggers.map((t) => el('tr', {},
		el('td', {}, t.event_type),
		el('td', {}, t.function),
		el('td', {class: 'mono'}, triggerSummary(t)),
		el('td', {}, statusBadge(t.enabled ? 'enabled' : 'disabled')),
		el('td', {}, el('button', {type: 'button', 'aria-label': (t.enabled ? 'Disable' : 'Enable') + ' trigger ' + t.event_type + ' of ' + t.function,
			onclick: async () => {
				try {
					await api('PATCH', P(p.id) + '/triggers/' + enc(t.id), {enabled: !t.enabled});
					flash((t.enabled ? 'Disabled' : 'Enabled') + ' the ' + t.event_type + ' trigger of ' + t.function + '.');
					render();
				} catch (e) {
					if (!(e instanceof SessionEnded))
						showError(box, e);
				}
			}}, t.enabled ? 'Disable' : 'Enable'))));
	const fn = el('select', {name: 'function_id'}, functions.map((f) => el('option', {value: f.id}, f.name)));
	const schedule = el('input', {type: 'text', name: 'schedule', required: true, class: 'mono', placeholder: '*/5 * * * *', autocomplete: 'off'});
	const tz = el('input', {type: 'text', name: 'timezone', placeholder: 'UTC', autocomplete: 'off'});
	const form = el('form', {class: 'card', onsubmit: async (ev) => {
		ev.preventDefault();
		box.hidden = true;
		const config = {schedule: schedule.value};
		if (tz.value)
			config.timezone = tz.value;
		try {
			await api('POST', P(p.id) + '/triggers', {event_type: 'cron', function_id: fn.value, config});
			flash('Created the schedule.');
			render();
		} catch (e) {
			if (!(e instanceof SessionEnded))
				showError(box, e);
		}
	}}, el('h3', {}, 'New schedule'),
	el('div', {class: 'grid'}, field('Function to run', fn), field('Cron schedule', schedule, 'five or six fields'), field('Time zone', tz, 'optional')),
	box, el('button', {type: 'submit', class: 'primary'}, 'Create schedule'));
	return el('section', {'aria-labelledby': 'trig-h', id: 'triggers-section'},
		el('h2', {id: 'trig-h'}, 'Triggers'),
		triggers.length ? table(['Type', 'Function', 'Schedule or address', 'State', ''], rows) : el('p', {class: 'empty'}, 'No triggers.'),
		functions.length ? form : null);
}

function deadLettersSection(p, letters) {
	const box = alertBox();
	const rows = letters.map((d) => el('tr', {},
		el('td', {}, fmtTime(d.failed_at)),
		el('td', {}, d.function),
		el('td', {}, d.trigger),
		el('td', {}, String(d.attempts)),
		el('td', {class: 'excerpt'}, d.last_error && typeof d.last_error === 'object' ? String(d.last_error.message || d.last_error.code || '') : String(d.last_error || '')),
		el('td', {}, d.retried_at ? 'retried ' + fmtTime(d.retried_at)
			: el('button', {type: 'button', 'aria-label': 'Retry dead letter of ' + d.function + ' failed ' + fmtTime(d.failed_at), onclick: async () => {
				try {
					const r = await api('POST', P(p.id) + '/dead-letters/' + enc(d.id) + '/retry');
					flash('Retried: invocation ' + r.invocation_id + ' is ' + r.status + '.');
					render();
				} catch (e) {
					if (!(e instanceof SessionEnded))
						showError(box, e);
				}
			}}, 'Retry'))));
	return el('section', {'aria-labelledby': 'dl-h', id: 'dead-letters-section'},
		el('h2', {id: 'dl-h'}, 'Dead letters'), box,
		letters.length ? table(['Failed', 'Function', 'Trigger', 'Attempts', 'Last error', ''], rows) : el('p', {class: 'empty'}, 'No dead letters.'));
}

function curlFor(slug, key) {
	return "curl -X POST -H 'x-api-key: " + key + "' -H 'Content-Type: application/json' \\\n  -d '{\"name\": \"zmesh\"}' " +
		location.origin + '/api/functions/' + slug;
}

function projectSettings(p, manage) {
	if (!manage)
		return el('section', {class: 'card', 'aria-labelledby': 'set-h'}, el('h2', {id: 'set-h'}, 'Settings'),
			el('p', {class: 'meta'}, 'The project\'s owner renames or deletes it.'));
	const name = el('input', {type: 'text', name: 'new_name', required: true, maxlength: 100, value: p.name, autocomplete: 'off'});
	const box = alertBox();
	const rename = el('form', {class: 'inline', onsubmit: async (ev) => {
		ev.preventDefault();
		box.hidden = true;
		try {
			await api('PATCH', P(p.id), {name: name.value});
			flash('Renamed the project.');
			render();
		} catch (e) {
			if (!(e instanceof SessionEnded))
				showError(box, e);
		}
	}}, field('New project name', name), el('button', {type: 'submit'}, 'Rename project'));
	const del = el('button', {type: 'button', class: 'danger', onclick: async () => {
		if (!await confirmDialog('Delete project?', 'The project "' + p.name + '", its functions and its database are deleted for good.', 'Delete project'))
			return;
		try {
			await api('DELETE', P(p.id));
			keepFlash = true;
			flash('Deleted the project ' + p.name + '.');
			location.hash = '#/';
		} catch (e) {
			if (!(e instanceof SessionEnded))
				showError(box, e);
		}
	}}, 'Delete project');
	return el('section', {class: 'card', 'aria-labelledby': 'set-h'}, el('h2', {id: 'set-h'}, 'Settings'), rename, box, el('p', {}, del));
}

// Members: every member sees them; the owner (or an admin) adds by email
// and removes (confirmed). The owner is never removed (the API says 409).
function membersSection(p, members, manage) {
	const box = alertBox();
	// The section again with the list as it is now, then the message (so a
	// flash seen means nothing is still on its way).
	async function refresh(message) {
		const ml = await api('GET', P(p.id) + '/members');
		section.replaceWith(membersSection(p, ml.members, manage));
		flash(message);
	}
	const rows = members.map((m) => el('tr', {},
		el('td', {}, m.email),
		el('td', {}, m.role),
		el('td', {}, fmtTime(m.added_at)),
		el('td', {class: 'actions'}, manage && m.role !== 'owner' ? el('button', {type: 'button', class: 'danger', 'aria-label': 'Remove member ' + m.email, onclick: async () => {
			if (!await confirmDialog('Remove member?', m.email + ' loses access to the project "' + p.name + '" at once.', 'Remove'))
				return;
			box.hidden = true;
			try {
				await api('DELETE', P(p.id) + '/members/' + enc(m.user_id));
				await refresh('Removed ' + m.email + ' from the project.');
			} catch (e) {
				if (!(e instanceof SessionEnded))
					showError(box, e);
			}
		}}, 'Remove') : null)));
	const member = el('input', {type: 'email', name: 'member_email', required: true, autocomplete: 'off'});
	const share = el('form', {class: 'inline card', onsubmit: async (ev) => {
		ev.preventDefault();
		box.hidden = true;
		try {
			const m = await api('POST', P(p.id) + '/members', {email: member.value});
			member.value = '';
			await refresh('Added ' + m.email + ' to the project.');
		} catch (e) {
			if (!(e instanceof SessionEnded))
				showError(box, e);
		}
	}}, field('Member email', member), el('button', {type: 'submit'}, 'Add member'));
	const section = el('section', {'aria-labelledby': 'mem-h', id: 'members-section'},
		el('h2', {id: 'mem-h'}, 'Members'), box,
		table(['Email', 'Role', 'Added', ''], rows),
		manage ? share : el('p', {class: 'meta'}, 'The project\'s owner adds and removes members.'));
	return section;
}

// The project's tier (an admin changes it; others see it) and its egress
// policy (the owner or an admin changes it). The API's refusals are shown
// as they are: they name the entry they refuse.
function planSection(p, manage) {
	const box = alertBox();
	const eg = p.egress && typeof p.egress === 'object' ? p.egress : {mode: 'open', allow: []};
	const allowed = Array.isArray(eg.allow) ? eg.allow : [];
	const facts = metricsList([
		['Tier', el('span', {id: 'project-tier'}, p.tier)],
		['Egress', el('span', {id: 'project-egress'}, String(eg.mode))],
		['Allowed destinations', allowed.length ? el('ul', {class: 'plain', 'aria-label': 'Allowed destinations'}, allowed.map((a) => el('li', {}, el('code', {}, a)))) : '—'],
	]);
	let tierForm = null;
	if (session.admin) {
		const tier = el('input', {type: 'text', name: 'tier', required: true, maxlength: 32, value: p.tier, autocomplete: 'off'});
		tierForm = el('form', {class: 'inline', onsubmit: async (ev) => {
			ev.preventDefault();
			box.hidden = true;
			try {
				const q = await api('PATCH', P(p.id), {tier: tier.value});
				flash('The project is now on the ' + q.tier + ' tier.');
				render();
			} catch (e) {
				if (!(e instanceof SessionEnded))
					showError(box, e);
			}
		}}, field('Tier', tier, 'a tier of the operator\'s policies (free, pro, enterprise by default)'), el('button', {type: 'submit'}, 'Change tier'));
	}
	let egressForm = null;
	if (manage) {
		const mode = el('select', {name: 'egress_mode'}, EGRESS_MODES.map((m) => el('option', {value: m, selected: m === eg.mode}, m)));
		const allow = el('textarea', {name: 'egress_allow', class: 'mono', rows: 4, spellcheck: 'false', placeholder: 'api.example.com\n*.example.org\n203.0.113.0/24'});
		allow.value = allowed.join('\n');
		const sync = () => { allow.disabled = mode.value !== 'allowlist'; };
		mode.addEventListener('change', sync);
		sync();
		egressForm = el('form', {class: 'egress', onsubmit: async (ev) => {
			ev.preventDefault();
			box.hidden = true;
			const list = mode.value === 'allowlist' ? allow.value.split('\n').map((x) => x.trim()).filter(Boolean) : [];
			try {
				const q = await api('PATCH', P(p.id), {egress: {mode: mode.value, allow: list}});
				flash('Egress is now ' + q.egress.mode + (q.egress.allow.length ? ': ' + q.egress.allow.join(', ') : '') + '.');
				render();
			} catch (e) {
				if (!(e instanceof SessionEnded))
					showError(box, e);
			}
		}}, el('div', {class: 'grid'}, field('Egress mode', mode, 'open: any public address; allowlist: only those listed; none: no network'),
			field('Allowed destinations', allow, 'allowlist only: one host, *.suffix, IP or CIDR per line')),
		el('button', {type: 'submit'}, 'Save egress'));
	}
	return el('section', {class: 'card', 'aria-labelledby': 'plan-h', id: 'plan-section'},
		el('h2', {id: 'plan-h'}, 'Tier and network'), facts,
		session.admin ? null : el('p', {class: 'meta'}, 'Only an admin changes a project\'s tier.'),
		tierForm, egressForm, box);
}

// ---- the code editor ------------------------------------------------------------------

const KEYWORDS = {
	javascript: new Set(('async await break case catch class const continue default delete do else export exports extends false finally for ' +
		'function if import in instanceof let new null of return require super switch this throw true try typeof undefined var void while yield').split(' ')),
	python: new Set(('and as assert async await break class continue def del elif else except False finally for from global if import in is ' +
		'lambda None nonlocal not or pass raise return True try while with yield').split(' ')),
};

// Tokens for highlighting: [kind, text] pairs covering the whole source.
function tokenize(src, lang) {
	const comment = lang === 'python' ? '#[^\\n]*' : '//[^\\n]*|/\\*[\\s\\S]*?(?:\\*/|$)';
	const string = lang === 'python'
		? '"""[\\s\\S]*?(?:"""|$)|\'\'\'[\\s\\S]*?(?:\'\'\'|$)|"(?:\\\\.|[^"\\\\\\n])*"?|\'(?:\\\\.|[^\'\\\\\\n])*\'?'
		: '`(?:\\\\[\\s\\S]|[^`\\\\])*`?|"(?:\\\\.|[^"\\\\\\n])*"?|\'(?:\\\\.|[^\'\\\\\\n])*\'?';
	const re = new RegExp('(' + comment + ')|(' + string + ')|(\\b\\d[\\d_]*(?:\\.\\d+)?\\b)|([A-Za-z_$][\\w$]*)', 'g');
	const out = [];
	let last = 0, m;
	while ((m = re.exec(src)) !== null) {
		if (m.index > last)
			out.push(['', src.slice(last, m.index)]);
		const kind = m[1] ? 'c' : m[2] ? 's' : m[3] ? 'n' : KEYWORDS[lang].has(m[4]) ? 'k' : '';
		out.push([kind, m[0]]);
		last = re.lastIndex;
	}
	if (last < src.length)
		out.push(['', src.slice(last)]);
	return out;
}

// A textarea over a highlighted copy of its text, with line numbers.
function codeEditor(label, value, lang) {
	const textarea = el('textarea', {name: 'code', spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off', wrap: 'off', rows: 18});
	const gutter = el('pre', {class: 'gutter', 'aria-hidden': 'true'});
	const hl = el('pre', {class: 'hl', 'aria-hidden': 'true'});
	const wrap = el('div', {class: 'editor'}, gutter, el('div', {class: 'layer'}, hl, textarea));
	let language = lang;
	let pending = false;
	function paint() {
		pending = false;
		const src = textarea.value;
		const n = src.split('\n').length;
		const nums = [];
		for (let i = 1; i <= n; i++)
			nums.push(i);
		gutter.textContent = nums.join('\n');
		hl.replaceChildren(...tokenize(src + '\n', language).map(([k, t]) => (k ? el('span', {class: 't' + k}, t) : document.createTextNode(t))));
		sync();
	}
	function sync() {
		hl.scrollTop = textarea.scrollTop;
		hl.scrollLeft = textarea.scrollLeft;
		gutter.scrollTop = textarea.scrollTop;
	}
	textarea.addEventListener('input', () => {
		if (!pending) {
			pending = true;
			requestAnimationFrame(paint);
		}
	});
	textarea.addEventListener('scroll', sync);
	textarea.value = value;
	paint();
	const node = field(label, textarea);
	node.classList.add('code-field');
	node.replaceChild(wrap, textarea);
	wrap.querySelector('.layer').append(textarea);
	return {
		node, textarea,
		setValue(v) { textarea.value = v; paint(); },
		setLanguage(l) { language = l; paint(); },
	};
}

// ---- one function ------------------------------------------------------------------------

async function viewFunction(r) {
	const [p, f] = await Promise.all([api('GET', P(r.pid)), api('GET', F(r.pid, r.fid))]);
	document.title = f.name + ' · ' + p.name + ' · zmesh functions';
	const tabs = [['code', 'Code'], ['invoke', 'Invoke'], ['history', 'History'], ['versions', 'Versions']];
	const nav = el('nav', {class: 'tabs', 'aria-label': 'Function'}, tabs.map(([t, label]) =>
		el('a', {href: href('p', p.id, 'f', f.id, t), 'aria-current': t === r.tab && !r.iid ? 'page' : null}, label)));
	let body;
	if (r.iid)
		body = await invocationDetail(p, f, r.iid);
	else if (r.tab === 'invoke')
		body = invokePanel(p, f);
	else if (r.tab === 'history')
		body = await historyPanel(p, f);
	else if (r.tab === 'versions')
		body = await versionsPanel(p, f);
	else
		body = codePanel(p, f);
	const box = alertBox();
	const del = el('button', {type: 'button', class: 'danger', onclick: async () => {
		if (!await confirmDialog('Delete function?', 'The function "' + f.name + '", its versions and its history are deleted for good.', 'Delete function'))
			return;
		try {
			await api('DELETE', F(p.id, f.id));
			keepFlash = true;
			flash('Deleted the function ' + f.name + '.');
			location.hash = href('p', p.id);
		} catch (e) {
			if (!(e instanceof SessionEnded))
				showError(box, e);
		}
	}}, 'Delete function');
	return el('section', {},
		crumbs(['Projects', '#/'], [p.name, href('p', p.id)], [f.name]),
		el('div', {class: 'title-row'}, el('h1', {}, f.name), del),
		box,
		el('p', {class: 'meta'}, f.language, ' · version ', el('span', {class: 'ver'}, String(f.version)), ' · slug ', el('code', {}, f.slug),
			' · timeout ', fmtMs(f.timeout_ms), ' · memory ', String(f.memory_mb), ' MB', ' · entry point ', el('code', {}, f.entry_point || 'handler')),
		el('p', {class: 'meta', id: 'env-names'}, 'Environment variables: ',
			Array.isArray(f.env_vars) && f.env_vars.length ? f.env_vars.map((n, i) => [i ? ', ' : '', el('code', {}, n)]) : 'none',
			Array.isArray(f.env_vars) && f.env_vars.length ? ' (values are not shown)' : null),
		nav, body);
}

function codePanel(p, f) {
	const editor = codeEditor('Code', f.code, f.language);
	const box = alertBox();
	const saved = el('p', {class: 'ok', role: 'status'});
	const form = el('form', {class: 'card', onsubmit: async (ev) => {
		ev.preventDefault();
		box.hidden = true;
		saved.textContent = '';
		try {
			const g = await api('PATCH', F(p.id, f.id), {code: editor.textarea.value});
			f.version = g.version;
			saved.textContent = 'Saved as version ' + g.version + '.';
			const ver = document.querySelector('main .meta .ver');
			if (ver)
				ver.textContent = String(g.version);
		} catch (e) {
			if (!(e instanceof SessionEnded))
				showError(box, e);
		}
	}}, editor.node, box, el('div', {class: 'row'}, el('button', {type: 'submit', class: 'primary'}, 'Save'), saved));
	return form;
}

function invokePanel(p, f) {
	const payload = el('textarea', {name: 'payload', class: 'mono', rows: 6, spellcheck: 'false'});
	payload.value = rerun && rerun.fid === f.id ? rerun.text : '{\n  "name": "zmesh"\n}';
	rerun = null;
	const box = alertBox();
	const out = el('div', {class: 'result', 'aria-live': 'polite'});
	const button = el('button', {type: 'submit', class: 'primary'}, 'Invoke');
	const form = el('form', {class: 'card', onsubmit: async (ev) => {
		ev.preventDefault();
		box.hidden = true;
		let value;
		try {
			value = payload.value.trim() === '' ? null : JSON.parse(payload.value);
		} catch (e) {
			showError(box, 'The payload is not valid JSON: ' + e.message);
			payload.setAttribute('aria-invalid', 'true');
			payload.focus();
			return;
		}
		payload.removeAttribute('aria-invalid');
		button.disabled = true;
		out.replaceChildren(el('p', {class: 'loading'}, 'Running…'));
		try {
			const res = await api('POST', F(p.id, f.id) + '/invoke', {payload: value}, {anyStatus: true});
			const d = res.data || {};
			if (!d.invocation_id)
				throw new ApiError(res.status, d.error && d.error.code, d.error && d.error.message);
			out.replaceChildren(invocationSummary(p, f, d));
			const logs = el('pre', {class: 'logs', 'aria-label': 'Logs'}, 'Loading logs…');
			out.append(el('h3', {}, 'Logs'), logs);
			const inv = await api('GET', F(p.id, f.id) + '/invocations/' + enc(d.invocation_id));
			logs.textContent = inv.logs || '(no output)';
			if (inv.logs_truncated)
				out.append(el('p', {class: 'notice'}, 'The logs were cut at the platform\'s limit.'));
		} catch (e) {
			if (!(e instanceof SessionEnded)) {
				out.replaceChildren();
				showError(box, e);
			}
		} finally {
			button.disabled = false;
		}
	}}, field('Payload (JSON)', payload), box, button);
	return el('div', {}, form, liveLogsPanel(p, f), out);
}

// ---- live logs (GET .../logs/stream: Server-Sent Events) -------------------------

const LIVE_MAX_LINES = 500;

// The function's logs as they are written, on any node, once "Follow" is
// pressed (each open stream holds one of the project's stream slots on the
// daemon). fetch() with the Authorization header (the token never goes into
// a URL) and a stream reader; every line reaches the page with textContent;
// a dropped connection resumes with Last-Event-ID; "Stop" or leaving the
// page closes it.
function liveLogsPanel(p, f) {
	const state = el('span', {class: 'live-state', role: 'status'}, 'Off');
	const list = el('ol', {class: 'live-logs', role: 'log', 'aria-label': 'Streamed lines'});
	const toggle = el('button', {type: 'button', 'aria-pressed': 'false'}, 'Follow');
	const node = el('section', {class: 'card live'}, el('div', {class: 'row'}, el('h3', {}, 'Live logs'), toggle, state), list);
	let ctl = null;
	let lastId = null;
	let retry = 2000;
	const stop = () => {
		if (ctl)
			ctl.abort();
		ctl = null;
		toggle.textContent = 'Follow';
		toggle.setAttribute('aria-pressed', 'false');
		state.textContent = 'Off';
	};
	toggle.addEventListener('click', () => {
		if (ctl)
			return stop();
		ctl = new AbortController();
		toggle.textContent = 'Stop';
		toggle.setAttribute('aria-pressed', 'true');
		state.textContent = 'Connecting…';
		follow(ctl);
	});
	window.addEventListener('hashchange', stop, {once: true});

	const add = (cls, ...parts) => {
		const li = el('li', {class: cls}, parts);
		list.append(li);
		while (list.childElementCount > LIVE_MAX_LINES)
			list.firstElementChild.remove();
		list.scrollTop = list.scrollHeight;
	};
	const time = (ts) => el('time', {datetime: String(ts || '')}, String(ts || '').replace(/^.*T/, '').replace(/Z$/, ''));
	const inv = (id) => el('code', {class: 'inv', title: String(id || '')}, String(id || '').slice(0, 8));
	const dispatch = (name, data) => {
		let d;
		try {
			d = JSON.parse(data);
		} catch {
			return;
		}
		if (!d || typeof d !== 'object')
			return;
		if (name === 'log')
			add(d.stream === 'system' ? 'live-line system' : 'live-line', time(d.ts), ' ', inv(d.invocation_id), ' ', String(d.line));
		else if (name === 'end')
			add('live-end', time(d.ts), ' ', inv(d.invocation_id), ' ', 'finished: ', String(d.status), ' in ', fmtMs(d.duration_ms));
		else if (name === 'dropped')
			add('live-dropped', d.reason === 'queue_full' ? String(d.lines) + ' lines dropped: the server could not keep up' : 'Some lines are gone: this page fell behind what the server keeps');
		else if (name === 'closed') {
			add('live-end', 'The function was deleted.');
			stop();
		}
	};

	// The event stream format: fields up to a blank line; CR, LF or CRLF end a line.
	const parser = () => {
		let buf = '', event = '', data = [];
		return (chunk, flush) => {
			buf += chunk;
			const lines = buf.split(/\r\n|\r|\n/);
			buf = flush ? '' : lines.pop();
			if (buf.length > 1048576)
				buf = '';
			for (const line of lines) {
				if (line === '') {
					if (data.length)
						dispatch(event || 'message', data.join('\n'));
					event = '';
					data = [];
					continue;
				}
				if (line.startsWith(':'))
					continue;
				const i = line.indexOf(':');
				const name = i < 0 ? line : line.slice(0, i);
				let value = i < 0 ? '' : line.slice(i + 1);
				if (value.startsWith(' '))
					value = value.slice(1);
				if (name === 'event')
					event = value;
				else if (name === 'data' && data.length < 10000)
					data.push(value);
				else if (name === 'id' && /^[0-9]{1,19}$/.test(value))
					lastId = value;
				else if (name === 'retry' && /^[0-9]{1,7}$/.test(value))
					retry = Math.min(60000, Math.max(100, Number(value)));
			}
		};
	};

	const follow = async (mine) => {
		while (!mine.signal.aborted && session) {
			const headers = {Accept: 'text/event-stream', Authorization: 'Bearer ' + session.token};
			if (lastId !== null)
				headers['Last-Event-ID'] = lastId;
			try {
				const res = await fetch(F(p.id, f.id) + '/logs/stream', {headers, credentials: 'omit', cache: 'no-store', redirect: 'error', signal: mine.signal});
				if (!res.ok) {
					let e = null;
					try {
						e = (await res.json()).error;
					} catch {
						e = null;
					}
					const why = 'Not available: ' + (e && e.message ? String(e.message) : 'HTTP ' + res.status);
					if (res.status !== 503 && res.status !== 429) {
						stop();
						state.textContent = why;
						return;
					}
					state.textContent = why;
				} else {
					state.textContent = 'Live';
					const feed = parser();
					const reader = res.body.getReader();
					const dec = new TextDecoder();
					for (;;) {
						const {value, done} = await reader.read();
						if (done) {
							feed(dec.decode(), true);
							break;
						}
						feed(dec.decode(value, {stream: true}), false);
						if (!node.isConnected || !session) {
							// the page was replaced (signed out): close it
							stop();
							return;
						}
					}
				}
			} catch (e) {
				if (mine.signal.aborted)
					return;
			}
			if (mine.signal.aborted)
				return;
			state.textContent = 'Reconnecting…';
			await new Promise((r) => setTimeout(r, retry));
		}
	};
	return node;
}

function metricsList(items) {
	return el('dl', {class: 'facts'}, items.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

function invocationSummary(p, f, d) {
	const m = d.metrics || {};
	return el('div', {class: 'card'},
		el('h3', {}, 'Result'),
		metricsList([
			['Status', statusBadge(d.status)],
			['Duration', fmtMs(d.duration_ms)],
			['Start', d.start || '—'],
			['CPU', fmtMs(m.cpu_ms)],
			['Memory', fmtBytes(m.memory_bytes)],
			['Invocation', el('a', {href: href('p', p.id, 'f', f.id, 'inv', d.invocation_id)}, d.invocation_id)],
		]),
		d.error ? [el('h4', {}, 'Error'), errorBlock(d.error)] : [el('pre', {class: 'code', 'aria-label': 'Result value'}, pretty(d.result))]);
}

function errorBlock(e) {
	if (!e || typeof e !== 'object')
		return el('pre', {class: 'code error-text'}, pretty(e));
	return el('div', {class: 'error-text'},
		el('p', {}, el('strong', {}, String(e.name || 'Error')), ': ', String(e.message || '')),
		e.stack ? el('pre', {class: 'code', 'aria-label': 'Stack'}, String(e.stack)) : null);
}

async function historyPanel(p, f) {
	const list = await api('GET', F(p.id, f.id) + '/invocations?limit=100');
	const all = list.invocations;
	const statuses = [...new Set(all.map((i) => i.status))].sort();
	const triggers = [...new Set(all.map((i) => i.trigger))].sort();
	const status = el('select', {name: 'status'}, el('option', {value: ''}, 'any'), statuses.map((s) => el('option', {value: s}, s)));
	const trigger = el('select', {name: 'trigger'}, el('option', {value: ''}, 'any'), triggers.map((s) => el('option', {value: s}, s)));
	const since = el('select', {name: 'since'}, [['', 'any time'], ['3600', 'last hour'], ['86400', 'last 24 hours'], ['604800', 'last 7 days']]
		.map(([v, t]) => el('option', {value: v}, t)));
	const holder = el('div', {});
	const charts = el('div', {class: 'charts'});
	const count = el('p', {class: 'meta', role: 'status'});
	function fill() {
		const now = Date.now();
		const shownInvs = all.filter((i) => (!status.value || i.status === status.value) && (!trigger.value || i.trigger === trigger.value) &&
			(!since.value || now - new Date(i.started_at).getTime() <= Number(since.value) * 1000));
		const rows = shownInvs.map((i) => el('tr', {},
				el('td', {}, el('a', {href: href('p', p.id, 'f', f.id, 'inv', i.id)}, fmtTime(i.started_at))),
				el('td', {}, statusBadge(i.status)),
				el('td', {}, i.trigger),
				el('td', {}, fmtMs(i.duration_ms)),
				el('td', {}, i.start || '—'),
				el('td', {}, 'v' + i.version),
				el('td', {class: 'excerpt'}, i.error ? String(i.error.message || '') : (i.result_excerpt || ''))));
		count.textContent = rows.length + ' of ' + all.length + ' invocations shown';
		charts.replaceChildren(...historyCharts(shownInvs));
		holder.replaceChildren(rows.length ? table(['Started', 'Status', 'Trigger', 'Duration', 'Start', 'Version', 'Result or error'], rows)
			: el('p', {class: 'empty'}, 'No invocations match.'));
	}
	for (const s of [status, trigger, since])
		s.addEventListener('change', fill);
	fill();
	return el('div', {},
		el('form', {class: 'filters', onsubmit: (ev) => ev.preventDefault()},
			field('Status', status), field('Trigger', trigger), field('Time range', since)),
		count, charts, holder);
}

function svg(tag, attrs, ...children) {
	const e = document.createElementNS(SVG, tag);
	for (const [k, v] of Object.entries(attrs || {}))
		e.setAttribute(k, String(v));
	for (const c of children)
		e.append(c instanceof Node ? c : document.createTextNode(String(c)));
	return e;
}

function percentile(sorted, q) {
	if (!sorted.length)
		return null;
	return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

// Invocations and errors per hour over the last 24 hours (an SVG bar chart),
// and the latency percentiles of the invocations shown.
function historyCharts(invs) {
	const now = Date.now(), hour = 3600000;
	const ok = new Array(24).fill(0), bad = new Array(24).fill(0);
	for (const i of invs) {
		const age = now - new Date(i.started_at).getTime();
		if (age < 0 || age >= 24 * hour)
			continue;
		const b = 23 - Math.floor(age / hour);
		(i.status === 'success' ? ok : bad)[b]++;
	}
	const max = Math.max(1, ...ok.map((v, k) => v + bad[k]));
	const W = 480, H = 110, bw = W / 24;
	const total = ok.reduce((a, b) => a + b, 0) + bad.reduce((a, b) => a + b, 0);
	const errs = bad.reduce((a, b) => a + b, 0);
	const label = 'Invocations per hour over the last 24 hours: ' + total + ', of which ' + errs + ' failed';
	const bars = [];
	for (let k = 0; k < 24; k++) {
		const hOk = (ok[k] / max) * (H - 10), hBad = (bad[k] / max) * (H - 10);
		if (ok[k])
			bars.push(svg('rect', {x: k * bw + 2, y: H - hOk, width: bw - 4, height: hOk, class: 'bar-ok'}));
		if (bad[k])
			bars.push(svg('rect', {x: k * bw + 2, y: H - hOk - hBad, width: bw - 4, height: hBad, class: 'bar-bad'}));
	}
	const chart = svg('svg', {viewBox: '0 0 ' + W + ' ' + (H + 2), role: 'img', 'aria-label': label, class: 'chart'},
		svg('title', {}, label), svg('line', {x1: 0, y1: H + 1, x2: W, y2: H + 1, class: 'axis'}), ...bars);
	const d = invs.map((i) => i.duration_ms).filter((v) => typeof v === 'number').sort((a, b) => a - b);
	return [
		el('figure', {class: 'card chart-card'}, chart,
			el('figcaption', {}, 'Invocations per hour, last 24 h: ', String(total), ' (', String(errs), ' failed)')),
		el('figure', {class: 'card chart-card'},
			metricsList([['p50', fmtMs(percentile(d, 0.5))], ['p95', fmtMs(percentile(d, 0.95))], ['p99', fmtMs(percentile(d, 0.99))]]),
			el('figcaption', {}, 'Latency of the ', String(d.length), ' invocations shown')),
	];
}

async function invocationDetail(p, f, iid) {
	const i = await api('GET', F(p.id, f.id) + '/invocations/' + enc(iid));
	return el('div', {class: 'card'},
		el('h2', {}, 'Invocation ', el('code', {}, i.id)),
		metricsList([
			['Status', statusBadge(i.status)],
			['Trigger', i.trigger],
			['Started', fmtTime(i.started_at)],
			['Duration', fmtMs(i.duration_ms)],
			['Start', i.start || '—'],
			['Queued', fmtMs(i.queue_ms)],
			['CPU', fmtMs(i.cpu_ms)],
			['Memory', fmtBytes(i.memory_bytes)],
			['Version', 'v' + i.version],
			['Attempt', String(i.attempt)],
		]),
		payloadBlock(p, f, i),
		el('h3', {}, 'Result'),
		el('pre', {class: 'code', 'aria-label': 'Result excerpt'}, i.result_excerpt || '—'),
		i.error ? [el('h3', {}, 'Error'), errorBlock(i.error)] : null,
		el('h3', {}, 'Logs'),
		el('pre', {class: 'logs', 'aria-label': 'Logs'}, i.logs || '(no output)'),
		i.logs_truncated ? el('p', {class: 'notice'}, 'The logs were cut at the platform\'s limit.') : null,
		el('p', {}, el('a', {href: href('p', p.id, 'f', f.id, 'history')}, 'Back to the history')));
}

// An invocation's payload as its record keeps it, and "Re-run with this
// payload", which fills the Invoke tab with it (sent only when asked). A
// payload over the record's bound was not kept: no re-run, and why.
function payloadBlock(p, f, i) {
	const head = el('h3', {}, 'Payload');
	if (i.payload_kept) {
		const text = JSON.stringify(i.payload === undefined ? null : i.payload, null, 2);
		return [head, el('pre', {class: 'code', 'aria-label': 'Payload'}, text),
			el('p', {}, el('button', {type: 'button', class: 'primary', onclick: () => {
				rerun = {fid: f.id, text};
				location.hash = href('p', p.id, 'f', f.id, 'invoke');
			}}, 'Re-run with this payload'))];
	}
	const why = i.payload_truncated
		? 'The payload was over 64 KiB: its record does not keep it, so it cannot be re-run from here.'
		: 'This record keeps no payload (it was recorded before payloads were kept): it cannot be re-run from here.';
	return [head, el('p', {class: 'notice', id: 'no-rerun'}, why),
		el('p', {}, el('button', {type: 'button', disabled: true, 'aria-describedby': 'no-rerun'}, 'Re-run with this payload'))];
}

// Line diff (longest common subsequence): [op, line] with op ' ', '-' or '+'.
function diffLines(a, b) {
	const x = a.split('\n'), y = b.split('\n');
	if (x.length > DIFF_MAX_LINES || y.length > DIFF_MAX_LINES)
		return null;
	const n = x.length, m = y.length;
	const L = Array.from({length: n + 1}, () => new Uint32Array(m + 1));
	for (let i = n - 1; i >= 0; i--)
		for (let j = m - 1; j >= 0; j--)
			L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
	const out = [];
	let i = 0, j = 0;
	while (i < n && j < m) {
		if (x[i] === y[j]) {
			out.push([' ', x[i++]]);
			j++;
		} else if (L[i + 1][j] >= L[i][j + 1]) {
			out.push(['-', x[i++]]);
		} else {
			out.push(['+', y[j++]]);
		}
	}
	while (i < n)
		out.push(['-', x[i++]]);
	while (j < m)
		out.push(['+', y[j++]]);
	return out;
}

async function versionsPanel(p, f) {
	// The API lists the states before the current one; the current one is
	// the function itself.
	const v = await api('GET', F(p.id, f.id) + '/versions');
	const current = {version: v.current, code: f.code, language: f.language, created_at: f.updated_at};
	v.versions = [current, ...v.versions.filter((x) => x.version !== v.current)];
	const diffBox = el('div', {class: 'diff-holder', 'aria-live': 'polite'});
	const box = alertBox();
	const rows = v.versions.map((x) => el('tr', {},
		el('td', {}, 'v' + x.version, x.version === v.current ? el('span', {class: 'badge badge-current'}, 'current') : null),
		el('td', {}, fmtTime(x.created_at)),
		el('td', {}, x.language),
		el('td', {class: 'actions'},
			x.version !== v.current ? [
				el('button', {type: 'button', onclick: () => {
					const d = diffLines(x.code, current ? current.code : '');
					diffBox.replaceChildren(el('h3', {}, 'Changes from v' + x.version + ' to the current code (v' + v.current + ')'),
						d === null ? el('p', {}, 'Too large to compare here.')
							: el('pre', {class: 'diff', 'aria-label': 'Diff'}, d.map(([op, line]) =>
								el('span', {class: op === '+' ? 'add' : op === '-' ? 'del' : 'same'}, op + ' ' + line + '\n'))));
				}}, 'Diff v' + x.version),
				' ',
				el('button', {type: 'button', class: 'danger', onclick: async () => {
					if (!await confirmDialog('Roll back?', 'The code of version ' + x.version + ' becomes the current code, as a new version.', 'Roll back'))
						return;
					try {
						const g = await api('POST', F(p.id, f.id) + '/versions/' + x.version + '/rollback');
						flash('Rolled back to version ' + x.version + ': the current version is now v' + g.version + '.');
						render();
					} catch (e) {
						if (!(e instanceof SessionEnded))
							showError(box, e);
					}
				}}, 'Roll back to v' + x.version)] : '—')));
	return el('div', {}, box, table(['Version', 'Created', 'Language', 'Actions'], rows), diffBox);
}

function viewNotFound() {
	document.title = 'Not found · zmesh functions';
	return el('section', {}, el('h1', {}, 'Not found'), el('p', {}, el('a', {href: '#/'}, 'Back to projects')));
}

// ---- start ------------------------------------------------------------------------------------

document.getElementById('sign-out').addEventListener('click', () => endSession('You have signed out.'));
window.addEventListener('hashchange', () => {
	if (!keepFlash)
		flash('');
	keepFlash = false;
	render();
});
if (session) {
	const exp = tokenExpiry(session.token);
	if (exp !== null && exp * 1000 <= Date.now()) {
		session = null;
		sessionStorage.removeItem(SESSION_KEY);
		signInMessage = 'Your session has expired. Sign in again.';
	}
}
render();
