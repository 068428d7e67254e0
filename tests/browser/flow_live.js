// Live logs on a function's Invoke page: follow the stream, invoke a
// function that logs over about 2 s, and see its first line in the panel
// before the result is shown; the lines (markup among them) are shown as
// text, the end of the invocation is shown, and Stop closes the stream.
// Prints the ids for the Python side to check against the API.
'use strict';

const {assert, BASE, launch, newPage, shot, signIn, createProject, createFunction, run, env} = require('./lib');

const CODE = "exports.handler = async () => {\n" +
	"  console.error('first <b>live</b> line');\n" +
	"  await new Promise((r) => setTimeout(r, 2000));\n" +
	"  console.error('second line');\n" +
	"  return {ok: true};\n" +
	"};\n";

run(async () => {
	const email = env('ZMESH_EMAIL'), password = env('ZMESH_PASSWORD');
	const tag = env('ZMESH_TAG');
	const browser = await launch();
	try {
		const {page, rec} = await newPage(browser);
		await signIn(page, email, password);
		const pid = await createProject(page, 'Live ' + tag);
		const fid = await createFunction(page, 'talker-' + tag, 'javascript', CODE);
		await page.getByRole('link', {name: 'Invoke', exact: true}).click();
		await page.getByRole('heading', {name: 'Live logs'}).waitFor();
		await page.getByRole('button', {name: 'Follow'}).click();
		await page.locator('.live-state', {hasText: 'Live'}).waitFor();
		assert.equal(await page.getByRole('button', {name: 'Stop'}).getAttribute('aria-pressed'), 'true');

		await page.getByLabel('Payload (JSON)').fill('{}');
		await page.getByRole('button', {name: 'Invoke', exact: true}).click();
		const lines = page.getByLabel('Streamed lines');
		await lines.locator('li', {hasText: 'first <b>live</b> line'}).waitFor();
		// The function still sleeps: no result yet.
		assert.equal(await page.getByLabel('Result value').count(), 0, 'the result came before the live line');
		assert.equal(await lines.locator('b').count(), 0, 'a log line was parsed as markup');
		await shot(page, 'live-logs');

		await page.getByLabel('Result value').waitFor();
		assert.deepEqual(JSON.parse(await page.getByLabel('Result value').textContent()), {ok: true});
		await lines.locator('li', {hasText: 'second line'}).waitFor();
		await lines.locator('li.live-end', {hasText: 'finished: success'}).waitFor();
		const invocation = await page.locator('dl.facts a').textContent();
		const items = await lines.locator('li').allTextContents();
		assert.equal(items.length, 3, items.join(' | '));
		assert.ok(items.every((t) => t.includes(invocation.slice(0, 8))), items.join(' | '));

		await page.getByRole('button', {name: 'Stop'}).click();
		await page.locator('.live-state', {hasText: 'Off'}).waitFor();
		// The one request that failed is the stream Stop cut.
		assert.deepEqual(rec.errors, [], 'page or console errors');
		assert.deepEqual(rec.foreign, [], 'requests to somewhere other than the daemon');
		const failed = rec.failed.filter((f) => !(f.includes('/logs/stream ') && f.includes('ERR_ABORTED')));
		assert.deepEqual(failed, [], 'failed requests');
		const streams = rec.requests.filter((r) => r.endsWith('/logs/stream'));
		assert.equal(streams.length, 1, streams.join(', '));
		assert.ok(streams.every((r) => !r.includes('access_token')));
		return {project_id: pid, function_id: fid, invocation_id: invocation};
	} finally {
		await browser.close();
	}
});
