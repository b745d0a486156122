/*
 * custos--0.3--0.4.sql: capture: custos.track()/untrack(), the action taxonomy registry (issue 4)
 */

\echo Use "ALTER EXTENSION custos UPDATE TO '0.4'" to load this file. \quit
