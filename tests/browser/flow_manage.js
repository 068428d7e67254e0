// The project's management in the dashboard, by labelled controls only:
// members added, listed and one removed (a cancelled, then a confirmed
// removal); the tier seen (read-only for an owner who is not an admin);
// egress set to an allowlist (an entry the API refuses shows its message,
// then a good one is saved and shown); a function created with an entry
// point and env vars (a reserved name refused by the API, its message
// shown), invoked (the env var reached it); its invocation opened from the
// history and re-run with the same payload; a payload over the record's
// bound is kept out and its re-run refused with the reason; a member who is
// not the owner is offered no control the API would refuse. Prints ids for
// the Python side to check against the API.
'use strict';

const {assert, BASE, launch, newPage, assertClean, shot, signIn, createProject, createFunction, run, env} = require('./lib');

const CODE = 'exports.main = async (payload, zmesh) => {\n' +
	'  console.log("greeting " + payload.who);\n' +
	'  return {greeting: zmesh.env.GREETING_TEXT, who: payload.who, has_other: "OTHER" in zmesh.env};\n' +
	'};\n';

// The Invoke tab's result, once the logs are in.
async function waitResult(page) {
	await page.waitForFunction(() => {
		const l = document.querySelector('pre.logs');
		return l && l.textContent !== 'Loading logs…';
	});
	return JSON.parse(await page.getByLabel('Result value').textContent());
}

run(async () => {
	const email = env('ZMESH_EMAIL'), password = env('ZMESH_PASSWORD'), tag = env('ZMESH_TAG');
	const keep = env('ZMESH_MEMBER_EMAIL'), gone = env('ZMESH_MEMBER2_EMAIL');
	const browser = await launch();
	try {
		const {page, rec} = await newPage(browser);
		await signIn(page, email, password);
		const projectName = 'Managed ' + tag;
		const pid = await createProject(page, projectName);

		// Members: two added by email, listed with the owner.
		const members = page.locator('#members-section tbody tr');
		for (const who of [keep, gone]) {
			await page.getByLabel('Member email').fill(who);
			await page.getByRole('button', {name: 'Add member'}).click();
			await page.locator('#flash', {hasText: 'Added ' + who + ' to the project.'}).waitFor();
			await members.filter({hasText: who}).waitFor();
		}
		assert.equal(await members.count(), 3);
		const cells = async (i) => (await members.nth(i).locator('td').allTextContents()).slice(0, 2);
		assert.deepEqual(await cells(0), [email, 'owner']);
		assert.deepEqual(await cells(1), [keep, 'member']);
		assert.deepEqual(await cells(2), [gone, 'member']);
		// The owner has no Remove button: the API would refuse.
		assert.equal(await members.nth(0).getByRole('button').count(), 0);
		// A removal asks first; Cancel keeps the member.
		await page.getByRole('button', {name: 'Remove member ' + gone}).click();
		const dialog = page.getByRole('dialog');
		await dialog.waitFor();
		assert.match(await dialog.textContent(), new RegExp(gone.replace(/[.+]/g, '\\$&') + ' loses access'));
		await dialog.getByRole('button', {name: 'Cancel'}).click();
		assert.equal(await members.count(), 3);
		await page.getByRole('button', {name: 'Remove member ' + gone}).click();
		await dialog.getByRole('button', {name: 'Remove', exact: true}).click();
		await page.locator('#flash', {hasText: 'Removed ' + gone + ' from the project.'}).waitFor();
		await page.waitForFunction(() => document.querySelectorAll('#members-section tbody tr').length === 2);
		assert.equal(await members.filter({hasText: gone}).count(), 0);
		assert.equal(await members.filter({hasText: keep}).count(), 1);

		// The tier: shown, read-only for an owner who is not an admin.
		assert.equal(await page.locator('#project-tier').textContent(), 'free');
		await page.getByText('Only an admin changes a project\'s tier.').waitFor();
		assert.equal(await page.getByRole('button', {name: 'Change tier'}).count(), 0);

		// Egress: open by default; the allowlist box is off until chosen.
		assert.equal(await page.locator('#project-egress').textContent(), 'open');
		assert.equal(await page.getByLabel('Allowed destinations', {exact: true}).isDisabled(), true);
		await page.getByLabel('Egress mode').selectOption('allowlist');
		const allow = page.getByLabel('Allowed destinations', {exact: true});
		await allow.fill('api.example.com\nhttp://bad example/');
		await page.getByRole('button', {name: 'Save egress'}).click();
		const refused = page.locator('#plan-section [role=alert]');
		await refused.filter({hasText: 'egress.allow[1]'}).waitFor();
		assert.match(await refused.textContent(), /\(INVALID_EGRESS\)$/);
		assert.equal(await page.locator('#project-egress').textContent(), 'open');
		await allow.fill('api.example.com\n*.example.org');
		await page.getByRole('button', {name: 'Save egress'}).click();
		await page.locator('#flash', {hasText: 'Egress is now allowlist: api.example.com, *.example.org.'}).waitFor();
		await page.waitForFunction(() => {
			const e = document.getElementById('project-egress');
			return e && e.textContent === 'allowlist';
		});
		assert.deepEqual(await page.getByRole('list', {name: 'Allowed destinations'}).locator('li').allTextContents(),
			['api.example.com', '*.example.org']);
		assert.equal(await page.getByLabel('Egress mode').inputValue(), 'allowlist');
		await shot(page, 'project-manage');

		// A function with an entry point and env vars. A reserved name: the
		// API's refusal, shown as it is.
		await page.getByLabel('Function name').fill('greeter-' + tag);
		await page.getByLabel('Entry point').fill('main');
		await page.getByRole('button', {name: 'Add variable'}).click();
		await page.getByLabel('Name of variable 1').fill('ZMESH_SECRET');
		await page.getByLabel('Value of variable 1').fill('x');
		await page.getByLabel('Function code').fill(CODE);
		await page.getByRole('button', {name: 'Create function'}).click();
		await page.getByRole('alert').filter({hasText: 'RESERVED_ENV_VAR'}).waitFor();
		assert.match(await page.getByRole('alert').filter({hasText: 'RESERVED_ENV_VAR'}).textContent(), /ZMESH_SECRET/);
		// Rows are added and removed: the second is removed again.
		await page.getByLabel('Name of variable 1').fill('GREETING_TEXT');
		await page.getByLabel('Value of variable 1').fill('hello from an env var');
		await page.getByRole('button', {name: 'Add variable'}).click();
		await page.getByLabel('Name of variable 2').fill('OTHER');
		await page.getByLabel('Value of variable 2').fill('dropped');
		await page.getByRole('button', {name: 'Remove variable 2'}).click();
		assert.equal(await page.getByLabel('Name of variable 2').count(), 0);
		const fid = await createFunction(page, 'greeter-' + tag, 'javascript', CODE);
		// The names are listed, the values never.
		const envLine = await page.locator('#env-names').textContent();
		assert.equal(envLine, 'Environment variables: GREETING_TEXT (values are not shown)');
		assert.equal((await page.locator('main').textContent()).includes('hello from an env var'), false);
		assert.match(await page.locator('main .meta').first().textContent(), /entry point main/);

		// Invoked: the env var reached the function through the SDK.
		await page.getByRole('link', {name: 'Invoke', exact: true}).click();
		await page.getByLabel('Payload (JSON)').fill('{"who": "first ' + tag + '"}');
		await page.getByRole('button', {name: 'Invoke', exact: true}).click();
		assert.deepEqual(await waitResult(page), {greeting: 'hello from an env var', who: 'first ' + tag, has_other: false});

		// The history: the invocation inspected, its payload re-run.
		await page.getByRole('link', {name: 'History'}).click();
		await page.getByText('1 of 1 invocations shown').waitFor();
		await page.locator('main tbody tr').first().getByRole('link').click();
		await page.getByRole('heading', {name: /^Invocation /}).waitFor();
		assert.deepEqual(JSON.parse(await page.getByLabel('Payload', {exact: true}).textContent()), {who: 'first ' + tag});
		await shot(page, 'invocation-payload');
		const invokesBefore = rec.requests.filter((r) => r.endsWith('/invoke')).length;
		await page.getByRole('button', {name: 'Re-run with this payload'}).click();
		await page.getByLabel('Payload (JSON)').waitFor();
		// Filled in, not sent until asked.
		assert.deepEqual(JSON.parse(await page.getByLabel('Payload (JSON)').inputValue()), {who: 'first ' + tag});
		assert.equal(rec.requests.filter((r) => r.endsWith('/invoke')).length, invokesBefore);
		await page.getByRole('button', {name: 'Invoke', exact: true}).click();
		assert.deepEqual(await waitResult(page), {greeting: 'hello from an env var', who: 'first ' + tag, has_other: false});
		// Going to the Invoke tab again shows the default payload, not the re-run's.
		await page.getByRole('link', {name: 'History'}).click();
		await page.getByText('2 of 2 invocations shown').waitFor();

		// A payload over the record's bound (sent outside the page): its
		// record keeps none, and the inspector says why there is no re-run.
		const token = await page.evaluate(() => JSON.parse(sessionStorage.getItem('zmesh.session')).token);
		const big = await fetch(BASE + '/projects/' + pid + '/functions/' + fid + '/invoke', {
			method: 'POST', headers: {Authorization: 'Bearer ' + token, 'content-type': 'application/json'},
			body: JSON.stringify({payload: {who: 'big', pad: 'x'.repeat(70000)}})});
		assert.equal(big.status, 200);
		const bigId = (await big.json()).invocation_id;
		await page.goto(BASE + '/#/p/' + pid + '/f/' + fid + '/inv/' + bigId);
		await page.getByRole('heading', {name: /^Invocation /}).waitFor();
		await page.getByText('The payload was over 64 KiB').waitFor();
		assert.equal(await page.getByRole('button', {name: 'Re-run with this payload'}).isDisabled(), true);
		assert.equal(await page.getByLabel('Payload', {exact: true}).count(), 0);

		// The browser's own notices of the two refusals provoked above (the
		// egress entry, the reserved env var name), and nothing else.
		const refusals = /^console\.error: Failed to load resource: the server responded with a status of 400 \(Bad Request\)$/;
		assert.equal(rec.errors.filter((e) => refusals.test(e)).length, 2, rec.errors.join('\n'));
		assertClean(rec, [refusals]);

		// A member who is not the owner sees the members, the tier and the
		// egress policy, and no control the API would refuse them.
		const other = await newPage(browser);
		await signIn(other.page, keep, env('ZMESH_MEMBER_PASSWORD'));
		await other.page.getByRole('link', {name: projectName}).click();
		await other.page.getByRole('heading', {name: 'Members'}).waitFor();
		assert.equal(await other.page.locator('#members-section tbody tr').count(), 2);
		assert.equal(await other.page.locator('#members-section').getByRole('button').count(), 0);
		await other.page.getByText('The project\'s owner adds and removes members.').waitFor();
		await other.page.getByText('The project\'s owner renames or deletes it.').waitFor();
		assert.equal(await other.page.locator('#project-egress').textContent(), 'allowlist');
		assert.equal(await other.page.locator('#project-tier').textContent(), 'free');
		for (const name of ['Add member', 'Save egress', 'Change tier', 'Rename project', 'Delete project'])
			assert.equal(await other.page.getByRole('button', {name}).count(), 0, name);
		assertClean(other.rec);
		return {project_id: pid, function_id: fid, big_invocation_id: bigId};
	} finally {
		await browser.close();
	}
});
