// The product's flow in the dashboard, by keyboard-reachable labelled
// controls only: sign in, create a project and a function, edit and save it
// (a new version), invoke it (an invalid payload is refused before sending),
// read the result and the logs, the history and one invocation, diff and roll
// back, create an API key (shown once, working) and revoke it, a reload that
// keeps the session, sign out. Prints ids for the Python side to check
// against the API.
'use strict';

const {assert, BASE, launch, newPage, assertClean, shot, signIn, createProject, createFunction, invoke, run, env} = require('./lib');

const V1 = "exports.handler = async (p) => {\n  console.log('doubling ' + p.n);\n  return {doubled: p.n * 2};\n};\n";
const V2 = "exports.handler = async (p) => {\n  console.log('tripling ' + p.n);\n  return {tripled: p.n * 3};\n};\n";

run(async () => {
	const email = env('ZMESH_EMAIL'), password = env('ZMESH_PASSWORD');
	const tag = env('ZMESH_TAG');
	const browser = await launch();
	try {
		const {page, rec} = await newPage(browser);
		await page.goto(BASE + '/');
		await page.getByRole('heading', {name: 'Sign in'}).waitFor();
		// The page, its script and its stylesheet, loaded (Navigation Timing).
		const loadMs = await page.evaluate(() => performance.getEntriesByType('navigation')[0].loadEventEnd);
		assert.ok(loadMs > 0, 'no load time');
		await shot(page, 'sign-in');
		await signIn(page, email, password);

		const projectName = 'Shop ' + tag;
		const pid = await createProject(page, projectName);
		// An environment variable's name the API would refuse is refused in the page.
		await page.getByLabel('Function name').fill('doubler-' + tag);
		await page.getByRole('button', {name: 'Add variable'}).click();
		await page.getByLabel('Name of variable 1').fill('1BAD');
		await page.getByRole('button', {name: 'Create function'}).click();
		await page.getByRole('alert').filter({hasText: 'is not [A-Za-z_][A-Za-z0-9_]*'}).waitFor();
		await page.getByLabel('Name of variable 1').fill('GREETING');
		await page.getByLabel('Value of variable 1').fill('hello');
		await page.getByRole('button', {name: 'Add variable'}).click();
		await page.getByLabel('Name of variable 2').fill('TARGET');
		await page.getByLabel('Value of variable 2').fill('a=b');
		const fid = await createFunction(page, 'doubler-' + tag, 'javascript', V1, {'Timeout (ms)': '5000', 'Memory (MB)': '128'});
		assert.equal(await page.locator('main .meta .ver').textContent(), '1');

		// The editor: line numbers and highlighted keywords.
		const gutter = await page.locator('.editor .gutter').textContent();
		assert.equal(gutter.split('\n').slice(0, 4).join(','), '1,2,3,4');
		assert.ok(await page.locator('.editor .hl .tk', {hasText: 'async'}).count() >= 1);
		await page.getByLabel('Code', {exact: true}).fill(V2);
		await page.getByRole('button', {name: 'Save'}).click();
		await page.getByText('Saved as version 2.').waitFor();
		assert.equal(await page.locator('main .meta .ver').textContent(), '2');
		await shot(page, 'function-code');

		// An invalid payload is refused in the page: no request is made.
		await page.getByRole('link', {name: 'Invoke', exact: true}).click();
		const before = rec.requests.filter((r) => r.endsWith('/invoke')).length;
		await page.getByLabel('Payload (JSON)').fill('{"n": 21,');
		await page.getByRole('button', {name: 'Invoke', exact: true}).click();
		await page.getByRole('alert').filter({hasText: 'not valid JSON'}).waitFor();
		assert.equal(rec.requests.filter((r) => r.endsWith('/invoke')).length, before);
		assert.equal(await page.getByLabel('Payload (JSON)').getAttribute('aria-invalid'), 'true');

		const logs = await invoke(page, '{"n": 21}');
		const result = await page.getByLabel('Result value').textContent();
		assert.deepEqual(JSON.parse(result), {tripled: 63});
		assert.match(await logs.textContent(), /tripling 21/);
		const facts = await page.locator('dl.facts').textContent();
		assert.match(facts, /Statussuccess/);
		assert.match(facts, /Start(cold|warm)/);
		assert.match(facts, /Duration\d/);
		await shot(page, 'invoke');
		await invoke(page, '{"n": 5}');
		assert.deepEqual(JSON.parse(await page.getByLabel('Result value').textContent()), {tripled: 15});

		// History: two invocations, filterable; one inspected.
		await page.getByRole('link', {name: 'History'}).click();
		await page.getByText('2 of 2 invocations shown').waitFor();
		await page.getByLabel('Status').selectOption('success');
		await page.getByText('2 of 2 invocations shown').waitFor();
		await page.getByLabel('Time range').selectOption('3600');
		await page.getByText('2 of 2 invocations shown').waitFor();
		await page.getByText('Invocations per hour, last 24 h: 2 (0 failed)').waitFor();
		assert.equal(await page.locator('svg.chart rect.bar-ok').count(), 1);
		await page.getByText('Latency of the 2 invocations shown').waitFor();
		await shot(page, 'history');
		await page.locator('main tbody tr').last().getByRole('link').click();
		await page.getByRole('heading', {name: /^Invocation /}).waitFor();
		assert.match(await page.getByLabel('Logs').textContent(), /tripling 21/);
		assert.match(await page.getByLabel('Result excerpt').textContent(), /63/);
		await shot(page, 'invocation');

		// Versions: the diff from v1 to the current code, then a rollback
		// (confirmed) that makes v1's code version 3.
		await page.getByRole('link', {name: 'Versions'}).click();
		await page.getByRole('button', {name: 'Diff v1'}).click();
		const diff = page.getByLabel('Diff');
		assert.match(await diff.locator('.del').allTextContents().then((a) => a.join('')), /doubled: p\.n \* 2/);
		assert.match(await diff.locator('.add').allTextContents().then((a) => a.join('')), /tripled: p\.n \* 3/);
		await shot(page, 'versions');
		await page.getByRole('button', {name: 'Roll back to v1'}).click();
		const dialog = page.getByRole('dialog');
		await dialog.waitFor();
		// Cancel changes nothing.
		await dialog.getByRole('button', {name: 'Cancel'}).click();
		assert.equal(await page.locator('main .meta .ver').textContent(), '2');
		await page.getByRole('button', {name: 'Roll back to v1'}).click();
		await dialog.getByRole('button', {name: 'Roll back', exact: true}).click();
		await page.getByText('Rolled back to version 1: the current version is now v3.').waitFor();
		await page.getByRole('link', {name: 'Code'}).click();
		assert.equal(await page.getByLabel('Code', {exact: true}).inputValue(), V1);
		const logs3 = await invoke(page, '{"n": 4}');
		assert.deepEqual(JSON.parse(await page.getByLabel('Result value').textContent()), {doubled: 8});
		assert.match(await logs3.textContent(), /doubling 4/);

		// API keys: created, shown once, works; revoked after a confirmation.
		await page.getByRole('link', {name: projectName}).click();
		// The function's row: three invocations in the last 24 h, none failed.
		await page.waitForFunction(() => {
			const t = document.querySelector('main table');
			const c = t ? t.querySelectorAll('tbody tr td') : [];
			return c.length === 6 && c[4].textContent === '3';
		});
		const fnCells = await page.locator('main table').first().locator('tbody tr td').allTextContents();
		assert.equal(fnCells[5], '0 %');
		assert.match(fnCells[3], /^success \d{4}-/);
		await page.getByLabel('Key name').fill('ci-' + tag);
		await page.getByRole('button', {name: 'Create key'}).click();
		const keyBox = page.getByLabel('New API key');
		await keyBox.waitFor();
		const key = await keyBox.inputValue();
		assert.match(key, /^zmk_/);
		const curl = await page.locator('.secret pre').textContent();
		assert.ok(curl.includes(key) && curl.includes(BASE + '/api/functions/doubler-' + tag), curl);
		const byKey = await fetch(BASE + '/api/functions/doubler-' + tag, {method: 'POST', headers: {'x-api-key': key, 'content-type': 'application/json'}, body: '{"n": 1}'});
		assert.equal(byKey.status, 200);
		assert.deepEqual((await byKey.json()).result, {doubled: 2});
		const row = page.locator('#keys-section tbody tr', {hasText: 'ci-' + tag});
		const prefix = await row.locator('code').textContent();
		assert.ok(prefix.length >= 8 && key.startsWith(prefix), 'listed prefix ' + prefix);
		await shot(page, 'project');
		await page.getByRole('button', {name: 'Revoke key ci-' + tag}).click();
		await page.getByRole('dialog').getByRole('button', {name: 'Revoke', exact: true}).click();
		await page.getByText('Revoked key ci-' + tag + '.').waitFor();
		await page.getByText('No API keys.').waitFor();
		assert.equal(await page.locator('#keys-section tbody tr').count(), 0);
		// The key shown once is not shown again.
		assert.equal(await page.getByLabel('New API key').count(), 0);

		// Sharing: the owner adds a member by email.
		await page.getByLabel('Member email').fill(env('ZMESH_MEMBER_EMAIL'));
		await page.getByRole('button', {name: 'Add member'}).click();
		await page.locator('#flash', {hasText: 'Added ' + env('ZMESH_MEMBER_EMAIL') + ' to the project.'}).waitFor();

		// A reload keeps the session and the place.
		const here = page.url();
		await page.reload();
		await page.getByRole('heading', {name: 'Functions'}).waitFor();
		assert.equal(page.url(), here);

		// Sign out: back to sign in, and a reload stays signed out.
		await page.getByRole('button', {name: 'Sign out'}).click();
		await page.getByRole('heading', {name: 'Sign in'}).waitFor();
		await page.getByText('You have signed out.').waitFor();
		await page.reload();
		await page.getByRole('heading', {name: 'Sign in'}).waitFor();
		assert.equal(await page.evaluate(() => sessionStorage.length), 0);

		assertClean(rec);

		// A phone-sized window: the same pages, nothing wider than the screen.
		const phone = await newPage(browser, {viewport: {width: 390, height: 844}});
		await signIn(phone.page, email, password);
		await phone.page.getByRole('link', {name: projectName}).click();
		await phone.page.getByRole('heading', {name: 'Functions'}).waitFor();
		await shot(phone.page, 'phone-project');
		const widths = await phone.page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
		assert.ok(widths[0] <= widths[1], 'the page is wider than the phone: ' + widths);
		await phone.page.getByRole('link', {name: 'doubler-' + tag}).click();
		await phone.page.getByLabel('Code', {exact: true}).waitFor();
		const w2 = await phone.page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
		assert.ok(w2[0] <= w2[1], 'the function page is wider than the phone: ' + w2);
		await shot(phone.page, 'phone-function');
		assertClean(phone.rec);
		return {project_id: pid, function_id: fid, key_prefix: key.slice(0, 12), load_ms: loadMs};
	} finally {
		await browser.close();
	}
});
