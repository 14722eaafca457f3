// A student's browser on the class hub (tests/test_hub.py): open a link, log in when the hub
// asks, and report what the page says, reloading it a few times.
//
//   node tests/hub_browser.js '{"playwright": ".../playwright-core", "chromium": "/usr/bin/chromium",
//                               "flags": [...], "url": "http://127.0.0.1:PORT/user/s1/proxy/N/",
//                               "user": "s1", "loads": 4}'
//
// Prints one JSON line: {"final_url": ..., "bodies": [...], "logged_in": true|false}.
// Playwright-core (npm) drives Debian's Chromium: no browser is downloaded.
const config = JSON.parse(process.argv[2]);
const { chromium } = require(config.playwright);

(async () => {
  const browser = await chromium.launch({
    executablePath: config.chromium, headless: true, args: config.flags, timeout: 60000,
  });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(60000);
    await page.goto(config.url);
    let loggedIn = false;
    if (new URL(page.url()).pathname.endsWith("/hub/login")) {
      // The dummy authenticator takes any password; the hub then sends the browser back
      // through the user's server's OAuth callback to the link it asked for.
      await page.fill("#username_input", config.user);
      await page.fill("#password_input", "any password");
      await Promise.all([page.waitForURL((u) => u.href === config.url), page.click("#login_submit")]);
      loggedIn = true;
    }
    const bodies = [(await page.textContent("body")).trim()];
    for (let i = 1; i < config.loads; i++) {
      await new Promise((done) => setTimeout(done, 100)); // the worker that answered is back in accept()
      await page.reload();
      bodies.push((await page.textContent("body")).trim());
    }
    console.log(JSON.stringify({ final_url: page.url(), bodies, logged_in: loggedIn }));
  } finally {
    await browser.close();
  }
})().catch((error) => {
  console.error(String(error && error.stack || error));
  process.exit(1);
});
