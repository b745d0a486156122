/*
 * custos--0.5--0.6.sql: reports: subject access and support reports, the viewer's SQL (issue 7)
 */

\echo Use "ALTER EXTENSION custos UPDATE TO '0.6'" to load this file. \quit
