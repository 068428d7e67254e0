// Hostile strings from users and functions are shown as text: a project
// named with markup, a function whose result, error and log lines are
// markup. window.__xss stays undefined, no element is injected, and the
// characters are shown as typed.
'use strict';

const {assert, launch, newPage, assertClean, shot, signIn, createProject, createFunction, invoke, run, env} = require('./lib');

const NAME = '<img src=x onerror=window.__xss=1>';
const RESULT = '<img src=x onerror=window.__xss=2>';
const LOG = '<script>window.__xss=3</script><b>bold</b>';
const ERR = '<svg onload=window.__xss=4>';
const CODE = `exports.handler = async (p) => {
  console.log(${JSON.stringify(LOG)});
  if (p && p.fail) { const e = new Error(${JSON.stringify(ERR)}); e.name = 'Boom<i>'; throw e; }
  return ${JSON.stringify(RESULT)};
};
`;

async function noInjection(page) {
	assert.equal(await page.evaluate(() => window.__xss), undefined);
	// The page's own markup has no img, script, svg (but its charts), b or i elements in main.
	assert.equal(await page.locator('main img, main script, main svg:not(.chart), main b, main i').count(), 0);
}

run(async () => {
	const browser = await launch();
	try {
		const {page, rec} = await newPage(browser);
		await signIn(page, env('ZMESH_EMAIL'), env('ZMESH_PASSWORD'));
		const pid = await createProject(page, NAME);
		await noInjection(page);
		assert.equal(await page.locator('main h1').textContent(), NAME);
		assert.equal(await page.locator('.crumbs [aria-current=page]').textContent(), NAME);
		assert.ok((await page.title()).startsWith(NAME));

		await page.goto(page.url().split('#')[0] + '#/');
		const link = page.locator('main a[href="#/p/' + pid + '"]');
		assert.equal(await link.textContent(), NAME);
		await noInjection(page);

		await link.click();
		const fid = await createFunction(page, 'markup-' + env('ZMESH_TAG'), 'javascript', CODE);
		const logs = await invoke(page, '{}');
		assert.equal(JSON.parse(await page.getByLabel('Result value').textContent()), RESULT);
		assert.equal((await logs.textContent()).trim(), LOG);
		await noInjection(page);
		await shot(page, 'xss-invoke');

		await invoke(page, '{"fail": true}');
		const err = await page.locator('.error-text').first().textContent();
		assert.ok(err.includes('Boom<i>') && err.includes(ERR), err);
		await noInjection(page);

		await page.getByRole('link', {name: 'History'}).click();
		await page.getByText('2 of 2 invocations shown').waitFor();
		const cells = await page.locator('main td.excerpt').allTextContents();
		assert.ok(cells.some((c) => c.includes(RESULT)), cells.join('|'));
		assert.ok(cells.some((c) => c.includes(ERR)), cells.join('|'));
		await noInjection(page);
		await page.locator('main tbody tr', {hasText: ERR}).getByRole('link').click();
		await page.getByRole('heading', {name: /^Invocation /}).waitFor();
		assert.equal((await page.getByLabel('Logs').textContent()).trim(), LOG);
		assert.ok((await page.getByLabel('Stack').textContent()).includes(ERR));
		await noInjection(page);

		// Deleting the function (confirmed) goes back to the project.
		await page.getByRole('button', {name: 'Delete function'}).click();
		await page.getByRole('dialog').getByRole('button', {name: 'Delete function'}).click();
		await page.getByText('No functions yet.').waitFor();
		assert.equal(await page.locator('#flash').textContent(), 'Deleted the function markup-' + env('ZMESH_TAG') + '.');
		await noInjection(page);

		// No request for the img's "x" was ever made.
		assert.ok(!rec.requests.some((r) => / \/x$/.test(r)), rec.requests.join('\n'));
		// A function's error is answered 500 by the API (docs: the status
		// follows the outcome): the browser's own notice of it is the one
		// console line expected.
		assertClean(rec, [/^console\.error: Failed to load resource: the server responded with a status of 500/]);
		assert.equal(rec.errors.length, 1, rec.errors.join('\n'));
		return {project_id: pid, function_id: fid};
	} finally {
		await browser.close();
	}
});
