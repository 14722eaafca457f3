// The course in JupyterLab, the way a learner meets it: driven in headless Chromium by Playwright.
//
//   node tests/lab_browser.mjs plan.json results.json
//
// tests/test_jupyterlab.py writes the plan (the address `make lab` printed, the server's token,
// the lessons and what to try in each) and judges the results; this script only drives the
// browser and reports what it saw, lesson by lesson, so that one failure does not hide another.
// For each lesson it:
//   1. opens the lesson in the lab (the first one from the address `make lab` printed);
//   2. runs it with Run All (the menu Run > Run All Cells, as a learner would), and waits for
//      the notebook's execution indicator to go from busy back to idle;
//   3. saves it (Ctrl+S), so that the test reads the outputs the lab holds;
//   4. presses play ONCE on each film and watches whether the frame advances;
//   5. in the playground, changes one widget (the strategy), presses Run, and waits for the
//      panel's output to be redrawn; and measures the panel's labels (is any cut short?);
//   6. clicks one source link and checks that a document tab opens on docs/sources.md with the
//      cited anchor in view;
//   7. shuts the lesson's kernel down (the sessions API), as closing the notebook would.
// Screenshots a person can look at are written to plan.screenshots.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [planPath, resultsPath] = process.argv.slice(2);
const plan = JSON.parse(readFileSync(planPath, 'utf8'));
const require = createRequire(join(plan.playwright, 'node_modules', 'noop.js'));
const { chromium } = require('playwright-core');

const NOTEBOOK = '.jp-NotebookPanel:not(.lm-mod-hidden)';
const CURRENT_TAB = '.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current';
const NOTHING_RAN_MS = 30000;  // idle this long after Run All, no cell run or queued: the click was lost
const PLAY = 'button[title="Play" i], button[aria-label="Play" i]';
const results = { printedUrl: plan.startUrl, firstTab: null, newsPrompt: [], lessons: [] };

function say(...words) { console.log(new Date().toISOString().slice(11, 19), ...words); }
function save() { writeFileSync(resultsPath, JSON.stringify(results, null, 1)); }

async function api(method, path) {
  const reply = await fetch(plan.base + path,
    { method, headers: { Authorization: `token ${plan.token}` } });
  return method === 'GET' ? reply.json() : reply.status;
}

async function currentTab(page) {
  return (await page.locator(CURRENT_TAB).first().innerText().catch(() => '')).trim();
}

async function noteToasts(page, where) {
  const texts = await page.locator('.Toastify__toast').allInnerTexts().catch(() => []);
  for (const text of texts) if (/news/i.test(text)) results.newsPrompt.push(`${where}: ${text}`);
}

async function openDialog(page) {
  const dialog = page.locator('.jp-Dialog');
  return (await dialog.count()) ? (await dialog.first().innerText()).replace(/\s+/g, ' ') : null;
}

// Scroll the notebook from its top, a screen at a time, until `target` is in the page (JupyterLab
// renders the cells near the view; a learner scrolls the same way).
async function scrollTo(page, target) {
  const scroller = page.locator(`${NOTEBOOK} .jp-WindowedPanel-outer`).first();
  await scroller.evaluate(e => { e.scrollTop = 0; });
  for (let step = 0; step < 200; step++) {
    await page.waitForTimeout(120);
    if (await target.count()) {
      await target.first().scrollIntoViewIfNeeded({ timeout: 10000 }).catch(() => {});
      return true;
    }
    const atEnd = await scroller.evaluate(e => {
      const before = e.scrollTop;
      e.scrollBy(0, e.clientHeight * 0.8);
      return e.scrollTop === before;
    });
    if (atEnd && !(await target.count())) return false;
  }
  return false;
}

async function openLesson(page, lesson, first) {
  if (!first) await page.goto(`${plan.base}/lab/tree/${lesson.path}?reset`);
  await page.waitForSelector(`${NOTEBOOK} .jp-Notebook .jp-Cell`, { timeout: 90000 });
  const shown = await currentTab(page);
  if (shown !== lesson.name) {  // reported (the test checks the first one); go on with the lesson
    await page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab', { hasText: lesson.name }).first().click();
  }
  await page.waitForSelector(`${NOTEBOOK} .jp-Notebook-ExecutionIndicator[data-status="idle"]`,
    { timeout: 90000 });
  return shown;
}

// How many code cells of the shown notebook have run (an execution count in their prompt).
async function cellsRun(page) {
  return page.evaluate(selector => [...document.querySelectorAll(selector)]
    .filter(prompt => /\[\d+\]/.test(prompt.textContent)).length,
  `${NOTEBOOK} .jp-CodeCell .jp-InputArea-prompt`);
}

// Run All; on a crowded machine the lab can report its kernel ready before the kernel runs
// anything (a click then runs no cell at all): the driver then waits for the kernel and clicks
// once more, as a learner would, and records that it had to (the test prints it).
async function runAll(page, lesson, record) {
  await runAllOnce(page, lesson, record);
  if (await cellsRun(page) === 0) {
    record.firstRunAllRanNothing = record.runAllSeconds;
    await page.waitForSelector(`${NOTEBOOK} .jp-Notebook-ExecutionIndicator[data-status="idle"]`,
      { timeout: 90000 });
    await page.waitForTimeout(2000);
    await runAllOnce(page, lesson, record);
  }
}

async function runAllOnce(page, lesson, record) {
  await page.evaluate(() => { window.acceptlabSawBusy = false; });
  await page.locator('.lm-MenuBar-item', { hasText: /^Run$/ }).click();
  const item = page.locator('.lm-Menu-item:visible', { hasText: /^Run All Cells/ }).first();
  record.command = (await item.locator('.lm-Menu-itemLabel').innerText()).trim();
  if (record.command !== 'Run All Cells') throw new Error(`the Run menu offered "${record.command}"`);
  const started = Date.now();
  if (lesson.loseFirstRunAll && record.firstRunAllRanNothing === undefined) {
    await page.keyboard.press('Escape');  // the test's lost click: the menu closes, nothing runs
  } else {
    await item.click();
  }
  // Done when the kernel went busy and came back idle; also when it is idle and every code cell
  // has run (a busy spell shorter than the polling can be missed), or when it has stayed idle
  // for NOTHING_RAN_MS with no cell run or queued (the click was lost: runAll clicks again).
  await page.waitForFunction(([indicatorSelector, promptSelector, clicked, nothingRanMs]) => {
    const indicator = document.querySelector(indicatorSelector);
    if (!indicator) return false;
    if (indicator.dataset.status === 'busy') window.acceptlabSawBusy = true;
    if (indicator.dataset.status !== 'idle') return false;
    if (window.acceptlabSawBusy) return true;
    const prompts = [...document.querySelectorAll(promptSelector)];
    const ran = prompts.filter(prompt => /\[\d+\]/.test(prompt.textContent)).length;
    if (prompts.length > 0 && ran === prompts.length) return true;
    const queued = prompts.filter(prompt => prompt.textContent.includes('[*]')).length;
    return ran === 0 && queued === 0 && Date.now() - clicked > nothingRanMs;
  }, [`${NOTEBOOK} .jp-Notebook-ExecutionIndicator`, `${NOTEBOOK} .jp-CodeCell .jp-InputArea-prompt`,
      started, NOTHING_RAN_MS], { polling: 100, timeout: plan.lessonTimeoutMs });
  record.runAllSeconds = (Date.now() - started) / 1000;
  record.dialogAfterRun = await openDialog(page);
  await page.keyboard.press('Control+S');
  await page.waitForFunction(selector => !document.querySelector(selector),
    `${CURRENT_TAB}.jp-mod-dirty`, { polling: 100, timeout: 30000 });
  record.saved = true;
}

async function playFilms(page, lesson, record) {
  const players = page.locator(`${NOTEBOOK} .jp-OutputArea-output`).filter({ has: page.locator(PLAY) });
  await scrollTo(page, players);
  const count = await players.count();
  record.films = [];
  for (let index = 0; index < count; index++) {
    const player = players.nth(index);
    const play = player.locator(PLAY).first();
    const picture = player.locator('img').first();
    await play.scrollIntoViewIfNeeded({ timeout: 10000 });
    const frame = async () => picture.evaluate(img => ({
      src: img.getAttribute('src') || '', height: img.getBoundingClientRect().height }));
    const before = await frame();
    await play.click();  // ONCE: a learner's first click must play the film
    let after = await frame();
    const deadline = Date.now() + plan.filmWaitMs;
    while (after.src === before.src && Date.now() < deadline) {
      await page.waitForTimeout(100);
      after = await frame();
    }
    const film = { index, heightBefore: before.height, heightAfter: after.height,
                   advanced: after.src !== before.src };
    if (lesson.screenshotFilm && index === 0) {
      film.screenshot = join(plan.screenshots, `film-${lesson.number}-after-one-click.png`);
      await player.screenshot({ path: film.screenshot });
    }
    record.films.push(film);
    say(`  film ${index}: picture ${before.height}px -> ${after.height}px, ` +
        `${film.advanced ? 'advanced' : 'DID NOT ADVANCE'} after one click`);
  }
}

async function usePlayground(page, lesson, record) {
  const strategy = page.locator('.widget-dropdown', { hasText: 'strategy' });
  const panel = page.locator(`${NOTEBOOK} .jp-OutputArea-output`).filter({ has: strategy }).first();
  record.playground = { found: await scrollTo(page, panel) };
  if (!record.playground.found) return;
  const select = panel.locator('.widget-dropdown', { hasText: 'strategy' }).locator('select');
  record.playground.cutLabels = await panel.locator('.widget-label, .widget-label-basic')
    .evaluateAll(labels => labels.filter(label => label.scrollWidth > label.clientWidth)
      .map(label => `${label.textContent.trim()} (${label.scrollWidth} px of text in ${label.clientWidth} px)`));
  const was = await select.inputValue();
  const options = await select.locator('option').evaluateAll(all => all.map(o => o.value));
  const wanted = options.includes('locked') && was !== 'locked' ? 'locked'
    : options.find(option => option !== was);
  await select.selectOption(wanted);
  const output = panel.locator('.widget-output').first();
  const imagesBefore = await output.locator('img').count();
  await panel.locator('button', { hasText: 'Run' }).first().click();
  const started = Date.now();
  await page.waitForFunction(([node, strategy]) => node.innerText.includes(strategy)
      && node.querySelectorAll('img').length > 0,
    [await output.elementHandle(), wanted], { polling: 200, timeout: 120000 }).catch(() => {});
  Object.assign(record.playground, {
    changed: `strategy: ${was} -> ${wanted}`, imagesBefore,
    imagesAfter: await output.locator('img').count(),
    mentionsChoice: (await output.innerText()).includes(wanted),
    seconds: (Date.now() - started) / 1000 });
}

async function openSource(page, lesson, record) {
  const [file, anchor] = lesson.sourceLink.split('#');
  const name = file.split('/').pop();
  const link = page.locator(`${NOTEBOOK} .jp-RenderedMarkdown a[href*="/${name}"][href$="#${anchor}"]`);
  record.source = { link: lesson.sourceLink, found: await scrollTo(page, link) };
  if (!record.source.found) return;
  await link.first().click();
  await page.waitForFunction(([selector, wanted]) =>
    document.querySelector(selector)?.innerText.trim() === wanted || document.querySelector('.jp-Dialog'),
    [CURRENT_TAB, name], { polling: 100, timeout: 30000 }).catch(() => {});
  record.source.tab = await currentTab(page);
  record.source.dialog = await openDialog(page);
  const viewer = page.locator('.jp-MainAreaWidget:not(.lm-mod-hidden) .jp-RenderedMarkdown').last();
  // JupyterLab 4 renders a Markdown id (explicit, or a heading's) as data-jupyter-id
  const target = viewer.locator(
    `[data-jupyter-id="${anchor}"], [id="${anchor}"], [name="${anchor}"]`).first();
  await target.waitFor({ state: 'attached', timeout: 15000 }).catch(() => {});
  await page.waitForTimeout(500);  // the viewer scrolls to the anchor once it has rendered
  record.source.anchorInView = (await target.count()) > 0 && await target.evaluate(element => {
    let box = element.getBoundingClientRect();
    if (!box.height) box = (element.nextElementSibling || element.parentElement).getBoundingClientRect();
    let scroller = element.parentElement;
    while (scroller && scroller.scrollHeight <= scroller.clientHeight) scroller = scroller.parentElement;
    const view = (scroller || document.documentElement).getBoundingClientRect();
    return box.top >= view.top - 2 && box.top < view.bottom;
  });
  record.source.url = page.url();
  if (lesson.screenshotSource) {
    record.source.screenshot = join(plan.screenshots, `source-from-${lesson.number}.png`);
    await page.screenshot({ path: record.source.screenshot });
  }
  say(`  source ${lesson.sourceLink}: tab "${record.source.tab}", ` +
      `anchor ${record.source.anchorInView ? 'in view' : 'NOT in view'}`);
}

async function shutDownKernels() {
  for (const session of await api('GET', '/api/sessions')) {
    await api('DELETE', `/api/sessions/${session.id}`);
  }
}

mkdirSync(plan.screenshots, { recursive: true });
const browser = await chromium.launch({ executablePath: plan.chromium, args: plan.chromiumArgs });
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  say('opening', plan.startUrl.replace(plan.token, '<token>'));
  await page.goto(plan.startUrl);
  for (const [position, lesson] of plan.lessons.entries()) {
    const record = { name: lesson.name, steps: [] };
    results.lessons.push(record);
    const step = async (label, action) => {
      record.steps.push(label);
      await action();
    };
    const started = Date.now();
    try {
      await step('open', async () => {
        record.tab = await openLesson(page, lesson, position === 0);
        if (position === 0) results.firstTab = record.tab;
      });
      await page.waitForTimeout(1000);  // a prompt shows once the lab has settled
      await noteToasts(page, lesson.name);
      await step('run all', () => runAll(page, lesson, record));
      say(`${lesson.name}: Run All took ${record.runAllSeconds.toFixed(1)} s`);
      if (lesson.films) await step('films', () => playFilms(page, lesson, record));
      if (lesson.playground) await step('playground', () => usePlayground(page, lesson, record));
      if (lesson.sourceLink) await step('source link', () => openSource(page, lesson, record));
    } catch (error) {
      record.failure = `${record.steps.at(-1)}: ${String(error.message || error).split('\n')[0]}`;
      record.dialog = await openDialog(page).catch(() => null);
      record.screenshot = join(plan.screenshots, `failure-${lesson.number}.png`);
      await page.screenshot({ path: record.screenshot }).catch(() => {});
      say(`${lesson.name}: FAILED at ${record.failure}`);
    }
    await shutDownKernels().catch(error => { record.shutdownError = String(error); });
    record.seconds = (Date.now() - started) / 1000;
    save();
  }
} finally {
  await browser.close();
  save();
}
