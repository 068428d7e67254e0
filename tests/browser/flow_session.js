// The session: a token that has expired goes back to sign in with a message
// (without being sent), a token the daemon refuses likewise, a wrong password
// is said so; the token is kept in sessionStorage, so a new tab (another
// context here) starts signed out.
'use strict';

const {assert, BASE, launch, newPage, assertClean, shot, signIn, run, env} = require('./lib');

async function withToken(browser, token) {
	const p = await newPage(browser);
	await p.page.goto(BASE + '/');
	await p.page.getByRole('heading', {name: 'Sign in'}).waitFor();
	await p.page.evaluate((t) => sessionStorage.setItem('zmesh.session', JSON.stringify({token: t, email: 'someone@example.test'})), token);
	await p.page.goto(BASE + '/#/');
	await p.page.reload();
	return p;
}

run(async () => {
	const browser = await launch();
	try {
		// Expired: caught in the page before any API request.
		const expired = await withToken(browser, env('ZMESH_EXPIRED_TOKEN'));
		await expired.page.getByRole('heading', {name: 'Sign in'}).waitFor();
		await expired.page.getByText('Your session has expired. Sign in again.').waitFor();
		assert.ok(!expired.rec.requests.some((r) => r.includes('/projects')), expired.rec.requests.join('\n'));
		assert.equal(await expired.page.evaluate(() => sessionStorage.getItem('zmesh.session')), null);
		await shot(expired.page, 'session-expired');
		assertClean(expired.rec);

		// Refused by the daemon (a signature it did not make): 401, then sign in.
		const forged = await withToken(browser, env('ZMESH_FORGED_TOKEN'));
		await forged.page.getByText('Your session has expired or is no longer valid. Sign in again.').waitFor();
		assert.ok(forged.rec.requests.some((r) => r === 'GET /projects'), forged.rec.requests.join('\n'));
		assert.equal(await forged.page.evaluate(() => sessionStorage.getItem('zmesh.session')), null);
		// The browser's own notice of the 401 is the one console line expected.
		assertClean(forged.rec, [/^console\.error: Failed to load resource: the server responded with a status of 401/]);

		// A wrong password is said so, and nothing is stored.
		const wrong = await newPage(browser);
		await wrong.page.goto(BASE + '/');
		await wrong.page.getByLabel('Email').fill(env('ZMESH_EMAIL'));
		await wrong.page.getByLabel('Password').fill('not-the-password');
		await wrong.page.getByRole('button', {name: 'Sign in'}).click();
		await wrong.page.getByRole('alert').filter({hasText: 'INVALID_CREDENTIALS'}).waitFor();
		assert.equal(await wrong.page.evaluate(() => sessionStorage.length), 0);
		assertClean(wrong.rec, [/^console\.error: Failed to load resource: the server responded with a status of 401/]);

		// Signed in by keyboard alone (the email field has the focus), the
		// session is this tab's: another context is signed out.
		const one = await newPage(browser);
		await one.page.goto(BASE + '/');
		await one.page.getByRole('heading', {name: 'Sign in'}).waitFor();
		await one.page.keyboard.type(env('ZMESH_EMAIL'));
		await one.page.keyboard.press('Tab');
		await one.page.keyboard.type(env('ZMESH_PASSWORD'));
		await one.page.keyboard.press('Enter');
		await one.page.getByRole('heading', {name: 'Projects', exact: true}).waitFor();
		// Then by keyboard: Tab through the page (brand, Sign out, ...) to
		// the project name field, type, Enter: the project's page opens.
		let focused = '';
		for (let i = 0; i < 12 && focused !== 'Project name'; i++) {
			await one.page.keyboard.press('Tab');
			focused = await one.page.evaluate(() => (document.activeElement && document.activeElement.labels && document.activeElement.labels[0] ? document.activeElement.labels[0].textContent : ''));
		}
		assert.equal(focused, 'Project name');
		await one.page.keyboard.type('kbd-' + env('ZMESH_TAG'));
		await one.page.keyboard.press('Enter');
		await one.page.getByRole('heading', {name: 'kbd-' + env('ZMESH_TAG')}).waitFor();
		const stored = JSON.parse(await one.page.evaluate(() => sessionStorage.getItem('zmesh.session')));
		assert.equal(typeof stored.token, 'string');
		assert.equal(await one.page.evaluate(() => localStorage.length), 0);
		assert.equal((await one.context.cookies()).length, 0);
		const two = await newPage(browser);
		await two.page.goto(BASE + '/');
		await two.page.getByRole('heading', {name: 'Sign in'}).waitFor();
		assertClean(one.rec);
		assertClean(two.rec);
		return {};
	} finally {
		await browser.close();
	}
});
