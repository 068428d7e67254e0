// Triggers and dead letters on a project's page: a dead letter (prepared by
// the Python side: a function that always fails, retries 0, invoked
// asynchronously) is listed with its error as text and retried; a schedule
// is created, listed, and disabled.
'use strict';

const {assert, BASE, launch, newPage, assertClean, shot, signIn, run, env} = require('./lib');

run(async () => {
	const pid = env('ZMESH_PROJECT_ID'), slug = env('ZMESH_FUNCTION');
	const browser = await launch();
	try {
		const {page, rec} = await newPage(browser);
		await signIn(page, env('ZMESH_EMAIL'), env('ZMESH_PASSWORD'));
		await page.goto(BASE + '/#/p/' + pid);
		await page.getByRole('heading', {name: 'Dead letters'}).waitFor();

		const letters = page.locator('#dead-letters-section tbody tr');
		assert.equal(await letters.count(), 1);
		const cells = await letters.first().locator('td').allTextContents();
		assert.equal(cells[1], slug);
		assert.equal(cells[2], 'async');
		assert.equal(cells[3], '1');
		assert.equal(cells[4], 'always <b>fails</b>');
		assert.equal(await page.locator('main b').count(), 0);
		await page.getByRole('button', {name: /^Retry dead letter of /}).click();
		await page.locator('#flash', {hasText: /^Retried: invocation [0-9a-f-]{36} is queued\.$/}).waitFor();
		await page.locator('#dead-letters-section td', {hasText: /^retried /}).first().waitFor();

		await page.getByLabel('Function to run').selectOption({label: slug});
		await page.getByLabel('Cron schedule').fill('0 0 1 1 *');
		await page.getByLabel('Time zone').fill('Europe/Paris');
		await page.getByRole('button', {name: 'Create schedule'}).click();
		await page.locator('#flash', {hasText: 'Created the schedule.'}).waitFor();
		const trig = page.locator('#triggers-section tbody tr');
		await trig.first().waitFor();
		let t = await trig.first().locator('td').allTextContents();
		assert.deepEqual(t.slice(0, 4), ['cron', slug, '0 0 1 1 * (Europe/Paris)', 'enabled']);
		await page.getByRole('button', {name: 'Disable trigger cron of ' + slug}).click();
		await page.locator('#flash', {hasText: 'Disabled the cron trigger of ' + slug + '.'}).waitFor();
		await page.getByRole('button', {name: 'Enable trigger cron of ' + slug}).waitFor();
		t = await trig.first().locator('td').allTextContents();
		assert.equal(t[3], 'disabled');
		await shot(page, 'project-events');
		assertClean(rec);
		return {};
	} finally {
		await browser.close();
	}
});
