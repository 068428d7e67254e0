// What every dashboard flow shares: Debian's Chromium driven by
// playwright-core, a page that records its errors, and a guard that lets no
// request leave the daemon under test.
//
// Environment (tests/integration/test_dashboard.py sets it):
//   ZMESH_URL             the daemon, e.g. http://127.0.0.1:PORT
//   ZMESH_EMAIL/PASSWORD  a user of it
//   ZMESH_SCREENSHOT_DIR  where screenshots go
//   CHROMIUM              the browser (default /usr/bin/chromium)
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const {chromium} = require('playwright-core');

function env(name, fallback) {
	const v = process.env[name] || fallback;
	if (!v)
		throw new Error('set ' + name);
	return v;
}

const BASE = env('ZMESH_URL');
const ORIGIN = new URL(BASE).origin;
const SHOTS = env('ZMESH_SCREENSHOT_DIR');
const TIMEOUT_MS = 20000;

if (!/^http:\/\/(127\.\d+\.\d+\.\d+|\[::1\]|localhost)(:\d+)?$/.test(ORIGIN))
	throw new Error('ZMESH_URL must be a loopback address: ' + ORIGIN);

async function launch() {
	const args = [];
	if (process.getuid && process.getuid() === 0)
		args.push('--no-sandbox'); // Chromium's sandbox refuses to run as root
	return chromium.launch({executablePath: env('CHROMIUM', '/usr/bin/chromium'), headless: true, args, timeout: 60000});
}

// A page of a fresh context (its own sessionStorage) that records page
// errors, console errors and warnings, failed requests and every request
// that is not for the daemon (those are aborted: nothing leaves the machine).
async function newPage(browser, opts) {
	const context = await browser.newContext({viewport: (opts && opts.viewport) || {width: 1280, height: 800}});
	const rec = {errors: [], foreign: [], requests: [], failed: []};
	await context.route('**/*', (route) => {
		const url = route.request().url();
		if (url.startsWith('data:') || new URL(url).origin === ORIGIN)
			return route.continue();
		rec.foreign.push(url);
		return route.abort();
	});
	const page = await context.newPage();
	page.setDefaultTimeout(TIMEOUT_MS);
	page.on('pageerror', (e) => rec.errors.push('pageerror: ' + e.message));
	page.on('console', (m) => {
		if (m.type() === 'error' || m.type() === 'warning')
			rec.errors.push('console.' + m.type() + ': ' + m.text());
	});
	page.on('request', (r) => rec.requests.push(r.method() + ' ' + new URL(r.url()).pathname));
	page.on('requestfailed', (r) => rec.failed.push(r.url() + ' ' + (r.failure() && r.failure().errorText)));
	return {context, page, rec};
}

// The page's record must be clean, but for the exact console lines a test
// expects (e.g. the browser's own notice of a 401).
function assertClean(rec, expected) {
	const left = rec.errors.filter((e) => !(expected || []).some((x) => (x instanceof RegExp ? x.test(e) : e === x)));
	assert.deepEqual(left, [], 'page or console errors');
	assert.deepEqual(rec.foreign, [], 'requests to somewhere other than the daemon');
	assert.deepEqual(rec.failed, [], 'failed requests');
}

async function shot(page, name) {
	fs.mkdirSync(SHOTS, {recursive: true});
	await page.screenshot({path: path.join(SHOTS, name + '.png'), fullPage: true});
}

async function signIn(page, email, password) {
	await page.goto(BASE + '/');
	await page.getByRole('heading', {name: 'Sign in'}).waitFor();
	await page.getByLabel('Email').fill(email);
	await page.getByLabel('Password').fill(password);
	await page.getByRole('button', {name: 'Sign in'}).click();
	await page.getByRole('heading', {name: 'Projects', exact: true}).waitFor();
}

async function createProject(page, name) {
	await page.goto(BASE + '/#/');
	await page.getByLabel('Project name').fill(name);
	await page.getByRole('button', {name: 'Create project'}).click();
	await page.getByRole('heading', {name: 'Functions'}).waitFor();
	assert.equal(await page.locator('main h1').textContent(), name);
	return decodeURIComponent(new URL(page.url()).hash.split('/')[2]);
}

async function createFunction(page, name, language, code, extra) {
	await page.getByLabel('Function name').fill(name);
	for (const [label, value] of Object.entries(extra || {}))
		await page.getByLabel(label, {exact: true}).fill(value);
	await page.getByLabel('Language').selectOption(language);
	await page.getByLabel('Function code').fill(code);
	await page.getByRole('button', {name: 'Create function'}).click();
	await page.getByRole('link', {name: 'Invoke'}).waitFor();
	assert.equal(await page.locator('main h1').textContent(), name);
	return decodeURIComponent(new URL(page.url()).hash.split('/')[4]);
}

// Invoke from the Invoke tab; waits for the logs to be shown.
async function invoke(page, payload) {
	await page.getByRole('link', {name: 'Invoke', exact: true}).click();
	await page.getByLabel('Payload (JSON)').fill(payload);
	await page.getByRole('button', {name: 'Invoke', exact: true}).click();
	const logs = page.getByLabel('Logs');
	await page.waitForFunction(() => {
		const l = document.querySelector('pre.logs');
		return l && l.textContent !== 'Loading logs…';
	});
	return logs;
}

// Run main(); print its result as the last line, exit 1 on failure.
function run(main) {
	const deadline = setTimeout(() => {
		console.error('flow: over its 240 s budget');
		process.exit(1);
	}, 240000);
	main().then((out) => {
		clearTimeout(deadline);
		console.log(JSON.stringify(out || {}));
		process.exit(0);
	}, (e) => {
		clearTimeout(deadline);
		console.error(e && e.stack ? e.stack : e);
		process.exit(1);
	});
}

module.exports = {assert, BASE, ORIGIN, launch, newPage, assertClean, shot, signIn, createProject, createFunction, invoke, run, env};
