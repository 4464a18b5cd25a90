-- Per shop week of the run: how much of the week is products new to the run. A product (PROD_CODE) is unseen
-- in a week when no validated line of the run's earlier weeks (smaller SHOP_WEEK) holds it, so the run's first
-- week is all unseen. unseen_line_rate: the week's lines of an unseen product over all its lines;
-- unseen_product_rate: the week's distinct unseen products over all its distinct products.
WITH run_lines AS (
    SELECT SHOP_WEEK, PROD_CODE, MIN(SHOP_WEEK) OVER (PARTITION BY PROD_CODE) AS first_week
    FROM silver_lines
    WHERE run = ?
)
SELECT
    SHOP_WEEK AS shop_week,
    COUNT(*) AS lines,
    COUNT(CASE WHEN SHOP_WEEK = first_week THEN 1 END) AS unseen_lines,
    CAST(COUNT(CASE WHEN SHOP_WEEK = first_week THEN 1 END) AS DOUBLE) / COUNT(*) AS unseen_line_rate,
    COUNT(DISTINCT PROD_CODE) AS products,
    COUNT(DISTINCT CASE WHEN SHOP_WEEK = first_week THEN PROD_CODE END) AS unseen_products,
    CAST(COUNT(DISTINCT CASE WHEN SHOP_WEEK = first_week THEN PROD_CODE END) AS DOUBLE)
        / COUNT(DISTINCT PROD_CODE) AS unseen_product_rate
FROM run_lines
GROUP BY SHOP_WEEK
ORDER BY shop_week
