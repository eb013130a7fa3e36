// Plotly charts of our series, with a symmetric-log value axis so the large first steps and the small
// late ones are both readable at once.
import {palette} from './api.js';

const CONFIG = {responsive: true, displaylogo: false};

// sign(y) * log10(1 + |y| / c): linear near zero, logarithmic beyond c.
function symlog(values, c) {
  return values.map((y) => (y === null ? null : Math.sign(y) * Math.log10(1 + Math.abs(y) / c)));
}

function symlogAxis(c, largest) {
  const tickvals = [0];
  const ticktext = ['0'];
  const top = Math.ceil(Math.log10(largest || 1));
  for (let k = Math.ceil(Math.log10(c)) + 1; k <= top; k += 1) {  // ticks inside the linear part would overlap
    const v = 10 ** k;
    for (const sign of [1, -1]) {
      tickvals.push(sign * Math.log10(1 + v / c));
      ticktext.push((sign * v).toPrecision(1));
    }
  }
  return {tickvals, ticktext, tickmode: 'array'};
}

// series: [{name, x, y}]; options: {title, ytitle, symlog, colours, height}.
export function lineChart(div, series, options) {
  const colours = options.colours || palette(series.length);
  let largest = 0;
  for (const s of series) for (const y of s.y) if (y !== null) largest = Math.max(largest, Math.abs(y));
  const c = largest > 0 ? largest / 1e4 : 1;
  const traces = series.map((s, i) => ({
    type: 'scatter', mode: 'lines', name: s.name, x: s.x,
    y: options.symlog ? symlog(s.y, c) : s.y,
    customdata: s.y,
    hovertemplate: `${s.name}<br>step %{x}<br>%{customdata:.4g}<extra></extra>`,
    line: {color: colours[i % colours.length], width: 1.2},
  }));
  const yaxis = {title: {text: options.ytitle || ''}, zeroline: true};
  if (options.symlog) Object.assign(yaxis, symlogAxis(c, largest), {title: {text: `${options.ytitle || ''} (symmetric log)`}});
  const layout = {
    title: {text: options.title, font: {size: 15}},
    xaxis: {title: {text: 'step'}},
    yaxis, height: options.height || 360, margin: {l: 70, r: 20, t: 40, b: 45},
    legend: {font: {size: 12}}, font: {size: 13},
  };
  return Plotly.react(div, traces, layout, CONFIG);
}

export function barChart(div, groups, options) {
  const colours = palette(groups.length);
  const traces = groups.map((g, i) => ({type: 'bar', name: g.name, x: g.x, y: g.y, marker: {color: colours[i]}}));
  const layout = {
    title: {text: options.title, font: {size: 15}}, barmode: 'group', height: options.height || 360,
    margin: {l: 70, r: 20, t: 40, b: 110}, yaxis: {title: {text: options.ytitle || ''}}, font: {size: 13},
  };
  return Plotly.react(div, traces, layout, CONFIG);
}
